// recvmsg, send and sendmsg as plain system calls. glibc's wrappers are thread-cancellation
// points: in a multi-threaded process each call switches the thread to asynchronous
// cancellation and back, two atomic operations around every read and write of the relay.
// wsgate never cancels a thread, so it skips that. Same arguments, results and errno.
#pragma once

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>

namespace wsgate::gateway::calls {

inline ssize_t recvMessage(int fd, msghdr* message, int flags) {
  return ::syscall(SYS_recvmsg, fd, message, flags);
}

inline ssize_t sendBytes(int fd, const void* data, size_t size, int flags) {
  return ::syscall(SYS_sendto, fd, data, size, flags, nullptr, 0);
}

inline ssize_t sendMessage(int fd, const msghdr* message, int flags) {
  return ::syscall(SYS_sendmsg, fd, message, flags);
}

}  // namespace wsgate::gateway::calls
