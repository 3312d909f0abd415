// Command concurrent serves several prompts at once from one context: each goroutine streams
// its own request while the engine batches them together (continuous batching), and the
// whole run is bounded by a deadline that cancels whatever is still running.
//
//	go run ./examples/concurrent MODEL_DIR [max-tokens]
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"minimax"
)

var prompts = []string{
	"Once upon a time",
	"The little robot",
	"In the morning the sun",
	"A cat and a dog",
}

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		log.Fatal("usage: concurrent MODEL_DIR [max-tokens]")
	}
	maxTokens := 32
	if len(os.Args) == 3 {
		n, err := strconv.Atoi(os.Args[2])
		if err != nil {
			log.Fatalf("max-tokens: %v", err)
		}
		maxTokens = n
	}
	model, err := minimax.LoadModel(os.Args[1], nil)
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()
	// One context (one engine) for everyone: it is safe for concurrent use.
	engine, err := minimax.NewContext(model, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := make([]string, len(prompts))
	var wg sync.WaitGroup
	for i, prompt := range prompts {
		wg.Add(1)
		go func(i int, prompt string) {
			defer wg.Done()
			results[i] = complete(ctx, engine, prompt, maxTokens)
		}(i, prompt)
	}
	wg.Wait()

	for _, r := range results {
		fmt.Println(r)
	}
	stats, err := engine.Stats()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d requests, %d tokens generated in %d engine steps\n",
		stats.FinishedRequests, stats.GeneratedTokens, stats.Steps)
}

// complete streams one request and returns its prompt, text and how it ended.
func complete(ctx context.Context, engine *minimax.Context, prompt string, maxTokens int) string {
	stream, err := engine.Stream(ctx, minimax.NewRequest().Text(prompt).MaxTokens(maxTokens))
	if err != nil {
		return fmt.Sprintf("%q: %v", prompt, err)
	}
	defer stream.Close()
	var text strings.Builder
	var last minimax.Event
	for ev := range stream.Events() {
		text.WriteString(ev.Text)
		last = ev
	}
	if err := stream.Err(); err != nil {
		return fmt.Sprintf("%q: %v", prompt, err)
	}
	if last.Err != nil {
		return fmt.Sprintf("%q: %v", prompt, last.Err)
	}
	return fmt.Sprintf("%q -> %q [%v, %d tokens]", prompt, text.String(), last.FinishReason, last.GeneratedCount)
}
