package minimax

import (
	"context"
	"errors"
	"sync"
)

// Stream delivers one request's events on a channel. Always Close it (defer s.Close()):
// that cancels the request if it still runs and releases the goroutine feeding the channel.
type Stream struct {
	c      *Context
	id     RequestID
	events chan Event
	stop   chan struct{} // closed by Close: cancel, and deliver nothing more
	done   chan struct{} // closed when every goroutine of the stream has returned
	once   sync.Once
	err    error
}

// Stream submits r and streams its events: every event up to and including the
// EventFinished one, then the channel is closed. When ctx is done the request is cancelled,
// so the stream ends soon after with FinishCancelled.
func (c *Context) Stream(ctx context.Context, r *Request) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id, err := c.Submit(r)
	if err != nil {
		return nil, err
	}
	s := &Stream{c: c, id: id, events: make(chan Event), stop: make(chan struct{}), done: make(chan struct{})}
	c.mu.Lock()
	c.streams[s] = struct{}{}
	c.mu.Unlock()
	go s.run(ctx)
	return s, nil
}

// ID is the id of the streamed request.
func (s *Stream) ID() RequestID { return s.id }

// Events is the channel of the request's events; it is closed after the last.
func (s *Stream) Events() <-chan Event { return s.events }

// Err is the error that ended the stream early (not the request's own error, which arrives
// in the finished event's Err); nil after a normal end. Valid once Events is closed.
func (s *Stream) Err() error { return s.err }

// Close cancels the request if it still runs, discards its remaining events and waits for
// the stream's goroutines. Safe to call more than once.
func (s *Stream) Close() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

func (s *Stream) run(ctx context.Context) {
	finished := make(chan struct{})
	watcher := make(chan struct{})
	var cancelErr error
	go func() { // cancels the request when ctx is done or the stream is closed
		defer close(watcher)
		select {
		case <-ctx.Done():
		case <-s.stop:
		case <-finished:
			return
		}
		// CodeNotFound: it finished meanwhile, nothing to cancel.
		if err := s.c.Cancel(s.id); err != nil && !errors.Is(err, CodeNotFound) {
			cancelErr = err
		}
	}()
	err := s.pump()
	close(finished)
	<-watcher // no call into the context may outlive the stream (Context.Close frees it)
	if err == nil {
		err = cancelErr
	}
	s.err = err
	close(s.events)
	s.c.mu.Lock()
	delete(s.c.streams, s)
	s.c.mu.Unlock()
	close(s.done)
}

// pump moves events from the library to the channel until the finished one.
func (s *Stream) pump() error {
	for {
		ev, err := s.c.NextEvent(s.id, -1)
		if err != nil {
			return err
		}
		select {
		case s.events <- ev:
		case <-s.stop: // closed: drain the library's queue, deliver nothing
			if ev.Prefix != nil {
				ev.Prefix.Close()
			}
		}
		if ev.Type == EventFinished {
			return nil
		}
	}
}
