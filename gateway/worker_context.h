// What every session and handshake on one worker shares: the worker's io_context, its metrics
// and its read buffer. Touched only from that worker's thread.
#pragma once

#include <cstdint>
#include <span>

#include <boost/asio/io_context.hpp>

#include "gateway/stats.h"

namespace wsgate::gateway {

struct WorkerContext {
  boost::asio::io_context& io;
  WorkerStats& stats;
  // Every relay read lands here and is written on at once; only what a peer could not take is
  // copied into the session, so idle sessions hold no buffer.
  std::span<uint8_t> read_buffer;
  unsigned index;
};

}  // namespace wsgate::gateway
