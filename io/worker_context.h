// What every session and handshake on one worker shares: the worker's io_context, its metrics
// and its read buffers. Touched only from that worker's thread.
#pragma once

#include <cstdint>
#include <span>

#include <boost/asio/io_context.hpp>

#include "io/deadlines.h"
#include "io/live_sessions.h"
#include "io/relay_buffers.h"
#include "stats/stats.h"

namespace wsgate::gateway {

struct WorkerContext {
  boost::asio::io_context& io;
  WorkerStats& stats;
  // Relay reads too big for a flow's landing slot go into a buffer lent to the flow while it
  // is busy, or, when none is left to lend, into this shared one. Either way the bytes are
  // written on at once; only what a peer could not take is copied into the session.
  RelayBuffers& buffers;
  std::span<uint8_t> read_buffer;
  Deadlines& deadlines;  // handshake phases and sessions' fixed-duration deadlines
  unsigned index;
  LiveSessions* live = nullptr;  // the worker's sessions, for a drain; null in some tests
};

}  // namespace wsgate::gateway
