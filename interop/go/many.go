package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// runMany is the "slow and many" load: `conns` producer connections held open at once (each
// one kafka-go Conn = one TCP connection to the proxy's listener for its partition's leader),
// each offering one record every interval (acks=all) for the soak's duration, while one
// consumer group member reads slowly (a pause after every record while the producers run).
// Record key "c<conn>-<seq>": each connection's records must all arrive, in order, once.
//
// The offered load is a fixed schedule, not a loop that sleeps after each acknowledgement
// (whose rate is 1/(interval + ack latency), and which counted the time 200 connections take
// to dial against the soak): the clock starts once every connection is open; connection j's
// record seq is due at start + j*interval/conns + seq*interval; a connection behind its
// schedule sends at once until it has caught up; records due before the end but not sent by
// then are offered and not acknowledged. So acked/offered is the share of the offered rate
// the proxy carried: ~100 % when it keeps up, less when it cannot.
func runMany(o *options, res *result, conns, valueBytes, slowMs int) {
	logger := log.New(os.Stderr, "[kafka-go] ", log.LstdFlags|log.Lmicroseconds)
	ctx := context.Background()
	client := &kafka.Client{Addr: kafka.TCP(o.bootstrap), Timeout: 20 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{o.topic}})
	if err != nil {
		res.fail("metadata", err)
		return
	}
	res.MetadataNodes = map[string]string{}
	for _, b := range md.Brokers {
		res.MetadataNodes[strconv.Itoa(b.ID)] = fmt.Sprintf("%s:%d", b.Host, b.Port)
	}

	pad := strings.Repeat("x", max(0, valueBytes-32))
	acked := make([]atomic.Int64, conns)
	var open, peakOpen, failed atomic.Int64
	var errMu sync.Mutex
	var wg sync.WaitGroup
	// The schedule's clock: set, then `start` closed, once every connection is open.
	var t0, stop time.Time
	start := make(chan struct{})
	var ackNanos, ackMax, behindMax, sends, unsent, ackedLate atomic.Int64
	atomicMax := func(a *atomic.Int64, v int64) {
		for cur := a.Load(); v > cur && !a.CompareAndSwap(cur, v); cur = a.Load() {
		}
	}
	dialStart := time.Now()
	dialed := make(chan struct{}, conns)
	// When the producer connections closed: from the first Close's call to the last's return.
	var closeMu sync.Mutex
	var closeFrom, closeTo time.Time
	closeConn := func(conn *kafka.Conn) {
		from := time.Now()
		_ = conn.Close()
		to := time.Now()
		closeMu.Lock()
		if closeFrom.IsZero() || from.Before(closeFrom) {
			closeFrom = from
		}
		if to.After(closeTo) {
			closeTo = to
		}
		closeMu.Unlock()
	}
	for j := 0; j < conns; j++ {
		wg.Add(1)
		go func(j int) {
			defer wg.Done()
			conn, err := kafka.DialLeader(ctx, "tcp", o.bootstrap, o.topic, j%o.partitions)
			if err != nil {
				errMu.Lock()
				res.fail(fmt.Sprintf("dial connection %d", j), err)
				errMu.Unlock()
				dialed <- struct{}{}
				return
			}
			defer closeConn(conn)
			if n := open.Add(1); n > peakOpen.Load() {
				peakOpen.Store(n)
			}
			defer open.Add(-1)
			dialed <- struct{}{}
			_ = conn.SetRequiredAcks(-1)
			<-start
			phase := time.Duration(j) * o.interval / time.Duration(conns)
			for seq := int64(0); ; seq++ {
				due := t0.Add(phase + time.Duration(seq)*o.interval)
				if !due.Before(stop) {
					break
				}
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				sent := time.Now()
				if !sent.Before(stop) {
					// Due before the end, not sent by then: offered, never acknowledged.
					unsent.Add(int64(o.soak-phase-time.Duration(seq)*o.interval+o.interval-1) / int64(o.interval))
					break
				}
				atomicMax(&behindMax, int64(sent.Sub(due)))
				_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
				_, err := conn.WriteMessages(kafka.Message{Key: []byte(fmt.Sprintf("c%d-%d", j, seq)),
					Value: []byte(fmt.Sprintf("%s-c%d-%d-%s", o.topic, j, seq, pad))})
				took := time.Since(sent)
				sends.Add(1)
				ackNanos.Add(int64(took))
				atomicMax(&ackMax, int64(took))
				if time.Now().After(stop) {
					ackedLate.Add(1)
				}
				if err != nil {
					if failed.Add(1) <= 5 {
						errMu.Lock()
						res.Errors = append(res.Errors, fmt.Sprintf("connection %d record %d: %v", j, seq, err))
						errMu.Unlock()
					}
					return
				}
				acked[j].Store(seq + 1)
			}
		}(j)
	}

	// The slow consumer, started once every connection is up.
	for j := 0; j < conns; j++ {
		<-dialed
	}
	t0 = time.Now()
	stop = t0.Add(o.soak)
	close(start)
	res.Step = fmt.Sprintf("%d connections open", open.Load())
	fmt.Fprintf(os.Stderr, "%d producer connections open\n", open.Load())
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{o.bootstrap}, GroupID: o.group,
		Topic: o.topic, StartOffset: kafka.FirstOffset, MaxWait: 500 * time.Millisecond,
		Logger: logger, ErrorLogger: logger})
	next := make([]int64, conns)
	done := make(chan struct{})
	var consumed, dup, mismatched atomic.Int64
	var producersDone atomic.Bool
	go func() {
		defer close(done)
		cctx, cancel := context.WithTimeout(ctx, o.soak+o.timeout)
		defer cancel()
		for {
			if producersDone.Load() {
				complete := true
				for j := range next {
					if next[j] < acked[j].Load() {
						complete = false
						break
					}
				}
				if complete {
					return
				}
			}
			// Short waits, so the loop sees the producers finish while nothing is arriving.
			fctx, fcancel := context.WithTimeout(cctx, 2*time.Second)
			m, err := r.FetchMessage(fctx)
			fcancel()
			if err != nil && cctx.Err() == nil && fctx.Err() != nil {
				continue
			}
			if err != nil {
				errMu.Lock()
				res.fail("consume", err)
				errMu.Unlock()
				return
			}
			var j int
			var seq int64
			if _, err := fmt.Sscanf(string(m.Key), "c%d-%d", &j, &seq); err != nil || j >= conns ||
				!strings.HasPrefix(string(m.Value), fmt.Sprintf("%s-c%d-%d-", o.topic, j, seq)) ||
				m.Partition != j%o.partitions {
				if mismatched.Add(1) <= 5 {
					res.badf("partition %d offset %d: key %q", m.Partition, m.Offset, m.Key)
				}
				continue
			}
			switch {
			case seq < next[j]:
				dup.Add(1)
			case seq > next[j]:
				res.Missing += int(seq - next[j])
				res.badf("connection %d: record %d after %d", j, seq, next[j]-1)
				next[j] = seq + 1
				consumed.Add(1)
			default:
				next[j] = seq + 1
				consumed.Add(1)
			}
			if !producersDone.Load() && slowMs > 0 {
				time.Sleep(time.Duration(slowMs) * time.Millisecond)
			}
		}
	}()
	wg.Wait()
	producersDone.Store(true)
	if !closeFrom.IsZero() {
		res.Closed = append(res.Closed, closed{Client: "kafka-go producer connections",
			From: unixSecs(closeFrom), To: unixSecs(closeTo)})
	}
	<-done
	if err := res.closing("kafka-go reader", r.Close); err != nil {
		res.fail("reader close", err)
	}
	for j := range acked {
		res.Acked += int(acked[j].Load())
	}
	// What the schedule offered: connection j's records due before the end.
	for j := 0; j < conns; j++ {
		phase := time.Duration(j) * o.interval / time.Duration(conns)
		res.Offered += int((o.soak - phase + o.interval - 1) / o.interval)
	}
	res.Many = &manyStats{
		DialSecs: t0.Sub(dialStart).Seconds(), WindowSecs: o.soak.Seconds(),
		AckMsMax: float64(ackMax.Load()) / 1e6, BehindMsMax: float64(behindMax.Load()) / 1e6,
		Unsent: int(unsent.Load()), AckedAfterEnd: int(ackedLate.Load()),
	}
	if n := sends.Load(); n > 0 {
		res.Many.AckMsMean = float64(ackNanos.Load()) / float64(n) / 1e6
	}
	res.Produced = res.Acked + int(failed.Load())
	res.SendFailed = int(failed.Load())
	res.Consumed = int(consumed.Load())
	res.Redelivered = int(dup.Load())
	res.Mismatched = int(mismatched.Load())
	res.EndOffsets = map[string]int64{"peak_open_connections": peakOpen.Load()}
	if res.Consumed != res.Acked {
		res.fail("consume", fmt.Errorf("%d of %d acknowledged records consumed", res.Consumed, res.Acked))
	}
}

// manyStats: how the schedule went (reported, asserted only through offered/acked).
type manyStats struct {
	// DialSecs: from the first dial to every connection open (the clock starts after).
	DialSecs   float64 `json:"dial_secs"`
	WindowSecs float64 `json:"window_secs"`
	// AckMs*: from a record's send to its acknowledgement.
	AckMsMean float64 `json:"ack_ms_mean"`
	AckMsMax  float64 `json:"ack_ms_max"`
	// BehindMsMax: the latest any record was sent after its due time.
	BehindMsMax float64 `json:"behind_ms_max"`
	// Unsent: records due before the end that were not sent by then.
	Unsent int `json:"unsent"`
	// AckedAfterEnd: records sent before the end, acknowledged after it.
	AckedAfterEnd int `json:"acked_after_end"`
}
