// Command check drives this server with haraqa's own Go client (github.com/haraqa/haraqa/pkg/haraqa)
// and reports each behaviour the client relies on. Run it with tests/goclient/run.sh.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/haraqa/haraqa/pkg/haraqa"
	"github.com/pkg/errors"
)

var failures int

func check(ok bool, format string, args ...interface{}) {
	status := "ok:  "
	if !ok {
		failures++
		status = "FAIL:"
	}
	fmt.Printf(status+" "+format+"\n", args...)
}

// isError: the client maps X-Errors texts to its error values; compare by text, which is the contract.
func isError(err error, text string) bool {
	return err != nil && errors.Cause(err).Error() == text
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func main() {
	url := os.Args[1]
	client, err := haraqa.NewClient(haraqa.WithURL(url))
	if err != nil {
		panic(err)
	}
	topic := fmt.Sprintf("GoClient%d", time.Now().UnixNano())
	name := strings.ToLower(topic)

	check(client.CreateTopic(topic) == nil, "create")
	err = client.CreateTopic(topic)
	check(errors.Cause(err) == haraqa.ErrTopicAlreadyExists, "create again -> ErrTopicAlreadyExists (%v)", err)

	sent := produceBatches(client, topic)
	sent = append(sent, produceStream(client, topic)...)
	big := make([][]byte, 20)
	for i := range big {
		big[i] = randomBytes(1 << 20)
	}
	err = client.ProduceMsgs(topic, big...)
	check(err == nil, "20 MiB batch (%v)", err)
	sent = append(sent, big...)
	readBack(client, topic, sent)

	last, err := client.ConsumeMsgs(topic, -1, 1)
	check(err == nil && len(last) == 1 && bytes.Equal(last[0], sent[len(sent)-1]), "id -1 -> the last message (%v)", err)
	_, err = client.ConsumeMsgs(topic, int64(len(sent)), 10)
	check(errors.Cause(err) == haraqa.ErrNoContent, "consume past the end -> ErrNoContent (%v)", err)
	_, err = client.ConsumeMsgs(topic+"missing", 0, 10)
	check(isError(err, "topic does not exist"), "consume of a missing topic -> topic does not exist (%v)", err)
	err = client.ProduceMsgs(topic+"missing", []byte("x"))
	check(isError(err, "topic does not exist"), "produce to a missing topic -> topic does not exist (%v)", err)

	group, _ := haraqa.NewClient(haraqa.WithURL(url), haraqa.WithConsumerGroup("go-group"))
	first, err1 := group.ConsumeMsgs(topic, -1, 5)
	second, err2 := group.ConsumeMsgs(topic, -1, 5)
	check(err1 == nil && err2 == nil && len(first) == 5 && len(second) == 5 &&
		bytes.Equal(first[0], sent[0]) && bytes.Equal(second[0], sent[5]), "a consumer group moves on (%v, %v)", err1, err2)

	topics, err := client.ListTopics("")
	check(err == nil && contains(topics, name), "list topics has %s (%v)", name, err)
	topics, err = client.ListTopics("^" + name + "$")
	check(err == nil && len(topics) == 1 && topics[0] == name, "list topics by regex -> %v (%v)", topics, err)

	writer := client.NewWriter(topic, []byte("\n"))
	_, err = writer.Write([]byte("line one\nline two\nline three\n"))
	check(err == nil, "io.Writer with a delimiter (%v)", err)
	lines, err := client.ConsumeMsgs(topic, int64(len(sent)), 10)
	check(err == nil && len(lines) == 3 && string(lines[2]) == "line three\n", "its lines read back (%d, %v)", len(lines), err)

	refusals(client, topic, int64(len(sent)+3))
	truncate(url, topic, int64(len(sent)+3))
	concurrentProducers(client, topic+"-concurrent")
	watch(client, []string{topic, topic + "-concurrent"})

	_, err = client.ConsumeMsgs(topic, 0, 1)
	check(isError(err, "topic does not exist"), "consume of a deleted topic -> topic does not exist (%v)", err)
	err = client.WatchTopics(context.Background(), []string{"no-such-topic-" + name}, make(chan string, 1))
	check(err != nil, "watch of a missing topic fails (%v)", err)
	if gaps := os.Getenv("IDLE_GAPS"); gaps != "" {
		produceAfterIdleGaps(client, topic+"-idle", strings.Split(gaps, ","))
	}

	fmt.Println("failures:", failures)
	if failures > 0 {
		os.Exit(1)
	}
}

// produceBatches sends 50 batches of 1-300 random messages of 1-2000 bytes.
func produceBatches(client *haraqa.Client, topic string) [][]byte {
	var sent [][]byte
	for i := 0; i < 50; i++ {
		batch := make([][]byte, 1+mrand.Intn(300))
		for j := range batch {
			batch[j] = randomBytes(1 + mrand.Intn(2000))
		}
		if err := client.ProduceMsgs(topic, batch...); err != nil {
			check(false, "produce batch %d: %v", i, err)
			os.Exit(1)
		}
		sent = append(sent, batch...)
	}
	check(true, "produced %d messages in 50 batches", len(sent))
	return sent
}

// produceStream sends a batch from an io.Pipe: no Content-Length, so Go sends it chunked.
func produceStream(client *haraqa.Client, topic string) [][]byte {
	messages := [][]byte{randomBytes(70000), randomBytes(3), randomBytes(1 << 20)}
	reader, writer := io.Pipe()
	go func() {
		for _, message := range messages {
			for start := 0; start < len(message); start += 4096 {
				end := start + 4096
				if end > len(message) {
					end = len(message)
				}
				_, _ = writer.Write(message[start:end])
			}
		}
		_ = writer.Close()
	}()
	err := client.Produce(topic, []int64{70000, 3, 1 << 20}, reader)
	check(err == nil, "streamed (chunked) produce (%v)", err)
	return messages
}

func readBack(client *haraqa.Client, topic string, sent [][]byte) {
	var got [][]byte
	for id := int64(0); id < int64(len(sent)); {
		limit := 1 + mrand.Intn(700)
		messages, err := client.ConsumeMsgs(topic, id, limit)
		if err != nil || len(messages) == 0 || len(messages) > limit {
			check(false, "consume from %d, limit %d: %d messages (%v)", id, limit, len(messages), err)
			return
		}
		got = append(got, messages...)
		id += int64(len(messages))
	}
	same := len(got) == len(sent)
	for i := 0; same && i < len(sent); i++ {
		same = bytes.Equal(got[i], sent[i])
	}
	check(same, "read back %d messages with random limits, all identical", len(got))
}

// truncate sends the PATCH body haraqa's headers.ModifyRequest marshals to (its zero time included).
func truncate(url, topic string, next int64) {
	body, _ := json.Marshal(struct {
		Truncate int64     `json:"truncate,omitempty"`
		Before   time.Time `json:"before,omitempty"`
	}{Truncate: 1})
	request, _ := http.NewRequest(http.MethodPatch, url+"/topics/"+topic, bytes.NewReader(body))
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		check(false, "modify: %v", err)
		return
	}
	defer response.Body.Close()
	var info struct{ MinOffset, MaxOffset int64 }
	err = json.NewDecoder(response.Body).Decode(&info)
	check(response.StatusCode == 200 && err == nil && info.MaxOffset == next, "modify -> %d %+v (%v)", response.StatusCode, info, err)
}

func concurrentProducers(client *haraqa.Client, topic string) {
	_ = client.CreateTopic(topic)
	var wait sync.WaitGroup
	var guard sync.Mutex
	sent, failed := map[string]bool{}, 0
	for producer := 0; producer < 16; producer++ {
		wait.Add(1)
		go func(producer int) {
			defer wait.Done()
			for i := 0; i < 40; i++ {
				var batch [][]byte
				for j := 0; j < 1+mrand.Intn(20); j++ {
					batch = append(batch, []byte(fmt.Sprintf("p%d-b%d-m%d-%x", producer, i, j, randomBytes(8))))
				}
				err := client.ProduceMsgs(topic, batch...)
				guard.Lock()
				if err != nil {
					failed++
				} else {
					for _, message := range batch {
						sent[string(message)] = true
					}
				}
				guard.Unlock()
			}
		}(producer)
	}
	wait.Wait()
	var got []string
	for id := int64(0); ; {
		messages, err := client.ConsumeMsgs(topic, id, 1000)
		if err != nil {
			break
		}
		for _, message := range messages {
			got = append(got, string(message))
		}
		id += int64(len(messages))
	}
	intact := len(got) == len(sent) && failed == 0
	for _, message := range got {
		intact = intact && sent[message]
	}
	check(intact, "16 concurrent producers: %d sent, %d read back, %d failed", len(sent), len(got), failed)
}

// watch: both topics' writes are announced, and deleting them ends the watch (close 1001).
func watch(client *haraqa.Client, topics []string) {
	names := make(chan string, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ended := make(chan error, 1)
	go func() { ended <- client.WatchTopics(ctx, append([]string(nil), topics...), names) }()
	time.Sleep(500 * time.Millisecond)
	for _, topic := range topics {
		_ = client.ProduceMsgs(topic, []byte("watched"))
	}
	seen := map[string]bool{}
	timeout := time.After(5 * time.Second)
	for len(seen) < len(topics) {
		select {
		case name := <-names:
			seen[name] = true
		case <-timeout:
			check(false, "watch saw %v of %v", seen, topics)
			return
		}
	}
	check(true, "watch announced writes to %v", topics)
	for _, topic := range topics {
		_ = client.DeleteTopic(topic)
	}
	select {
	case err := <-ended:
		check(err != nil && ctx.Err() == nil, "watch ends when its topics are deleted (%v)", err)
	case <-time.After(5 * time.Second):
		check(false, "watch still open after its topics were deleted")
	}
}

func contains(list []string, item string) bool {
	for _, element := range list {
		if element == item {
			return true
		}
	}
	return false
}

// produceAfterIdleGaps: a produce after each idle gap (seconds) on the client's pooled connections,
// whose idle timeout (90 s) should end before the server's, so no produce meets a closing connection.
func produceAfterIdleGaps(client *haraqa.Client, topic string, gaps []string) {
	_ = client.CreateTopic(topic)
	defer client.DeleteTopic(topic)
	for _, gap := range gaps {
		seconds, _ := strconv.Atoi(gap)
		time.Sleep(time.Duration(seconds) * time.Second)
		reused := false
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
		request, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			http.MethodPost, os.Args[1]+"/topics/"+topic, bytes.NewReader([]byte("idle")))
		request.Header.Set("X-Sizes", "4")
		response, err := http.DefaultClient.Do(request)
		if err == nil {
			response.Body.Close()
		}
		check(err == nil && response.StatusCode == http.StatusNoContent, "produce after %d s idle (connection reused: %v) (%v)",
			seconds, reused, err)
		err = client.ProduceMsgs(topic, []byte("idle"))
		check(err == nil, "the haraqa client's produce after %d s idle (%v)", seconds, err)
	}
}

// refusals: answers given before a view runs must reach the client as errors (it reads an answer
// without X-Errors as success) and store nothing.
func refusals(client *haraqa.Client, topic string, next int64) {
	many := make([][]byte, 400000) // an X-Sizes of 1.2 MB: past the 1 MiB head the server takes
	for i := range many {
		many[i] = []byte("0123456789")
	}
	err := client.ProduceMsgs(topic, many...)
	// the server answers 431 and closes as soon as the head is too long: the client, still sending
	// the body, reads the 431 or fails on a broken pipe, an error either way
	check(err != nil, "a head over 1 MiB is an error (%v)", err)
	err = client.CreateTopic(strings.Repeat("t", 5000))
	check(err != nil && strings.Contains(err.Error(), "invalid request"), "a request line over 4 KiB is an error (%.80v)", err)
	_, err = client.ConsumeMsgs(topic, next, 10)
	check(errors.Cause(err) == haraqa.ErrNoContent, "neither stored anything (%v)", err)
}
