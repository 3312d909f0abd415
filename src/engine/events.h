// EventHub: the pull side of event delivery. Each request that uses pull delivery has a FIFO
// queue; next() waits on one request's queue or on any of them. A request is known from
// submit until its final event has been taken; after that its id is forgotten (NotFound).
// Requests that use a callback are registered too, so next() on them can say so.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "engine/event.h"

namespace mmx {

class EventHub {
 public:
  // Makes `id` known. pull == false: its events go to a callback, next() refuses it.
  void open(uint64_t id, bool pull);
  // Queues an event of a pull request and wakes the waiters.
  void push(std::unique_ptr<Event> event);
  // Forgets a callback request after its final event was delivered.
  void forget(uint64_t id);

  // The next event of request `id`, or of any pull request when id == 0, waiting up to
  // timeout_ms (0: poll, negative: forever). Throws Code::Timeout when none came in time,
  // Code::NotFound for an unknown or finished id, Code::State for a callback request.
  std::unique_ptr<Event> next(uint64_t id, int32_t timeout_ms);

 private:
  struct Slot {
    bool pull = true;
    bool listed = false;  // its id is in ready_ (at most once)
    std::deque<std::unique_ptr<Event>> queue;
  };
  // Pops the front event of `it`; the final event forgets the request.
  std::unique_ptr<Event> take(std::unordered_map<uint64_t, Slot>::iterator it);
  std::unique_ptr<Event> try_next(uint64_t id);

  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<uint64_t, Slot> slots_;
  // Ids of pull requests that may have events, served round-robin by next(0). An entry whose
  // queue was emptied by next(id) is skipped when reached.
  std::deque<uint64_t> ready_;
};

}  // namespace mmx
