#include "engine/events.h"

#include <chrono>
#include <string>

#include "core/error.h"

namespace mmx {

void EventHub::open(uint64_t id, bool pull) {
  std::lock_guard<std::mutex> lock(mu_);
  slots_[id].pull = pull;
}

void EventHub::push(std::unique_ptr<Event> event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = slots_.find(event->request_id);
    MMX_CHECK(it != slots_.end(), Code::Internal,
              "event for request " + std::to_string(event->request_id) + " that has no queue");
    Slot& slot = it->second;
    slot.queue.push_back(std::move(event));
    if (!slot.listed) {
      slot.listed = true;
      ready_.push_back(it->first);
    }
  }
  cv_.notify_all();
}

void EventHub::forget(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  slots_.erase(id);
}

std::unique_ptr<Event> EventHub::take(std::unordered_map<uint64_t, Slot>::iterator it) {
  std::unique_ptr<Event> event = std::move(it->second.queue.front());
  it->second.queue.pop_front();
  if (event->type == EventType::Finished) slots_.erase(it);
  return event;
}

std::unique_ptr<Event> EventHub::try_next(uint64_t id) {
  if (id != 0) {
    auto it = slots_.find(id);
    MMX_CHECK(it != slots_.end(), Code::NotFound,
              "request " + std::to_string(id) + " is unknown or its final event was already taken");
    MMX_CHECK(it->second.pull, Code::State,
              "request " + std::to_string(id) + " delivers its events to a callback");
    return it->second.queue.empty() ? nullptr : take(it);
  }
  while (!ready_.empty()) {
    uint64_t rid = ready_.front();
    ready_.pop_front();
    auto it = slots_.find(rid);
    if (it == slots_.end()) continue;
    it->second.listed = false;
    if (it->second.queue.empty()) continue;
    std::unique_ptr<Event> event = take(it);
    if (event->type != EventType::Finished && !it->second.queue.empty()) {
      it->second.listed = true;
      ready_.push_back(rid);  // to the back: requests take turns
    }
    return event;
  }
  return nullptr;
}

std::unique_ptr<Event> EventHub::next(uint64_t id, int32_t timeout_ms) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms > 0 ? timeout_ms : 0);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (std::unique_ptr<Event> event = try_next(id)) return event;
    if (timeout_ms == 0) break;
    if (timeout_ms < 0) {
      cv_.wait(lock);
    } else if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      if (std::unique_ptr<Event> event = try_next(id)) return event;
      break;
    }
  }
  fail(Code::Timeout, id == 0 ? "no event arrived within " + std::to_string(timeout_ms) + " ms"
                              : "no event of request " + std::to_string(id) + " arrived within " +
                                    std::to_string(timeout_ms) + " ms");
}

}  // namespace mmx
