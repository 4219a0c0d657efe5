// Command go-bench is the Go side of tally's benchmark suite: the counters
// a Go programmer would use instead of tally, run under exactly the
// protocol of the C driver (bench/README.md):
//
//	go-bench --impl NAME --workload W --threads T --seconds S --rep R
//	         [--reps N] [--keys K] [--zipf-file F]
//	go-bench --stream N --workload W [--threads T] [--keys K] [--zipf-file F]
//	         (each thread's first N ops as "thread op key", as the C driver)
//
// prints impl,workload,threads,rep,seconds,ops,mops,check,extra per rep.
//
//	go_safecounter  the article's SafeCounter: sync.Mutex + map[string]int
//	go_syncmap      sync.Map of *atomic.Int64, Load first, LoadOrStore on a miss
//	go_atomic       one atomic.Int64 (workload counter)
//
// Goroutines = threads; GOMAXPROCS is left at its default (all CPUs).
// Exit status: 0 ok, 1 a check failed, 2 usage.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const batch = 256

// SafeCounter is safe to use concurrently. (The article's type, verbatim.)
type SafeCounter struct {
	v   map[string]int
	mux sync.Mutex
}

// Inc increments the counter for the given key.
func (c *SafeCounter) Inc(key string) {
	c.mux.Lock()
	// Lock so only one goroutine at a time can access the map c.v.
	c.v[key]++
	c.mux.Unlock()
}

// Value returns the current value of the counter for the given key.
func (c *SafeCounter) Value(key string) int {
	c.mux.Lock()
	// Lock so only one goroutine at a time can access the map c.v.
	defer c.mux.Unlock()
	return c.v[key]
}

// syncMapInc adds 1 to key in a sync.Map of *atomic.Int64: the common
// Load-first pattern, allocating a counter only on a miss.
func syncMapInc(m *sync.Map, key string) {
	v, ok := m.Load(key)
	if !ok {
		v, _ = m.LoadOrStore(key, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

func syncMapValue(m *sync.Map, key string) (int64, bool) {
	v, ok := m.Load(key)
	if !ok {
		return 0, false
	}
	return v.(*atomic.Int64).Load(), true
}

// xorshift64* seeded with thread index + 1: the same stream as bench.h.
func rngNext(s *uint64) uint64 {
	x := *s
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	*s = x
	return x * 0x2545F4914F6CDD1D
}

func uniformIndex(x uint64, mask uint64) uint64 { return (x >> 33) & mask }
func mixedIsGet(x uint64) bool                  { return ((x >> 11) % 10) == 0 }
func zipfStart(i int, mask uint64) uint64       { return (uint64(i) * 2654435761) & mask }

func insertKey(buf []byte, thread int, n uint64) []byte {
	buf = append(buf[:0], 't')
	buf = strconv.AppendUint(buf, uint64(thread), 10)
	buf = append(buf, ':')
	return strconv.AppendUint(buf, n, 10)
}

func memoryKey(i int) string {
	var b [12]byte
	copy(b[:], "key:")
	for j := 11; j >= 4; j-- {
		b[j] = byte('0' + i%10)
		i /= 10
	}
	return string(b[:])
}

type config struct {
	impl, workload string
	threads        int
	seconds        float64
	rep            int
	keys           int
	zipfFile       string
}

type run struct {
	cfg  *config
	keys []string
	mask uint64
	zipf []uint32
	zmsk uint64
	stop atomic.Bool

	sc *SafeCounter
	sm *sync.Map
	at *paddedInt64
}

type paddedInt64 struct {
	_ [64]byte
	v atomic.Int64
	_ [56]byte
}

type slot struct {
	ops uint64
	_   [56]byte
}

// work is one goroutine's timed loop; each (impl, workload) pair has its
// own loop so that every op is a direct call.
func (r *run) work(t int, sl *slot) {
	var n uint64
	rng := uint64(t) + 1
	keys, mask := r.keys, r.mask
	zipf, zmsk := r.zipf, r.zmsk
	var pos uint64
	if zipf != nil {
		pos = zipfStart(t, zmsk)
	}
	var sink int64
	buf := make([]byte, 0, 32)
	w := r.cfg.workload
	switch r.cfg.impl {
	case "go_atomic":
		c := &r.at.v
		for !r.stop.Load() {
			for i := 0; i < batch; i++ {
				c.Add(1)
			}
			n += batch
		}
	case "go_safecounter":
		c := r.sc
		switch w {
		case "hot":
			for !r.stop.Load() {
				for i := 0; i < batch; i++ {
					c.Inc(keys[0])
				}
				n += batch
			}
		case "uniform1k", "iterate":
			for !r.stop.Load() {
				for i := 0; i < batch; i++ {
					c.Inc(keys[uniformIndex(rngNext(&rng), mask)])
				}
				n += batch
			}
		case "zipf1m":
			for !r.stop.Load() {
				for i := 0; i < batch; i++ {
					c.Inc(keys[zipf[pos]])
					pos = (pos + 1) & zmsk
				}
				n += batch
			}
		case "mixed":
			for !r.stop.Load() {
				for i := 0; i < batch; i++ {
					x := rngNext(&rng)
					k := keys[uniformIndex(x, mask)]
					if mixedIsGet(x) {
						sink += int64(c.Value(k))
					} else {
						c.Inc(k)
					}
				}
				n += batch
			}
		case "insert":
			for !r.stop.Load() {
				for i := 0; i < batch; i++ {
					buf = insertKey(buf, t, n+uint64(i))
					c.Inc(string(buf))
				}
				n += batch
			}
		}
	case "go_syncmap":
		m := r.sm
		switch w {
		case "hot":
			for !r.stop.Load() {
				for i := 0; i < batch; i++ {
					syncMapInc(m, keys[0])
				}
				n += batch
			}
		case "uniform1k", "iterate":
			for !r.stop.Load() {
				for i := 0; i < batch; i++ {
					syncMapInc(m, keys[uniformIndex(rngNext(&rng), mask)])
				}
				n += batch
			}
		case "zipf1m":
			for !r.stop.Load() {
				for i := 0; i < batch; i++ {
					syncMapInc(m, keys[zipf[pos]])
					pos = (pos + 1) & zmsk
				}
				n += batch
			}
		case "mixed":
			for !r.stop.Load() {
				for i := 0; i < batch; i++ {
					x := rngNext(&rng)
					k := keys[uniformIndex(x, mask)]
					if mixedIsGet(x) {
						v, _ := syncMapValue(m, k)
						sink += v
					} else {
						syncMapInc(m, k)
					}
				}
				n += batch
			}
		case "insert":
			for !r.stop.Load() {
				for i := 0; i < batch; i++ {
					buf = insertKey(buf, t, n+uint64(i))
					syncMapInc(m, string(buf))
				}
				n += batch
			}
		}
	}
	sl.ops = n
	sinkAll.Add(sink)
}

var sinkAll atomic.Int64

// iterateOnce sums all values: a full pass, as tally_map_foreach does.
func (r *run) iterateOnce() int64 {
	var sum int64
	if r.sc != nil {
		r.sc.mux.Lock()
		for _, v := range r.sc.v {
			sum += int64(v)
		}
		r.sc.mux.Unlock()
	} else {
		r.sm.Range(func(_, v any) bool {
			sum += v.(*atomic.Int64).Load()
			return true
		})
	}
	return sum
}

func (r *run) value(key string) (int64, bool) {
	if r.sc != nil {
		r.sc.mux.Lock()
		v, ok := r.sc.v[key]
		r.sc.mux.Unlock()
		return int64(v), ok
	}
	return syncMapValue(r.sm, key)
}

func (r *run) size() int {
	if r.sc != nil {
		r.sc.mux.Lock()
		defer r.sc.mux.Unlock()
		return len(r.sc.v)
	}
	n := 0
	r.sm.Range(func(_, _ any) bool { n++; return true })
	return n
}

func (r *run) preload(key string) {
	if r.sc != nil {
		r.sc.v[key] = 0
	} else {
		r.sm.Store(key, new(atomic.Int64))
	}
}

func (r *run) replay(t int, ops uint64, expected []uint64) {
	switch r.cfg.workload {
	case "uniform1k", "iterate", "mixed":
		rng := uint64(t) + 1
		mixed := r.cfg.workload == "mixed"
		for n := uint64(0); n < ops; n++ {
			x := rngNext(&rng)
			if !mixed || !mixedIsGet(x) {
				expected[uniformIndex(x, r.mask)]++
			}
		}
	case "zipf1m":
		l := uint64(len(r.zipf))
		laps, rest := ops/l, ops%l
		if laps != 0 {
			for _, j := range r.zipf {
				expected[j] += laps
			}
		}
		pos := zipfStart(t, r.zmsk)
		for n := uint64(0); n < rest; n++ {
			expected[r.zipf[pos]]++
			pos = (pos + 1) & r.zmsk
		}
	}
}

type outcome struct {
	seconds float64
	ops     uint64
	extra   string
	why     string
}

func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res int64
	fmt.Sscan(string(b), &size, &res)
	return res * int64(os.Getpagesize())
}

func (r *run) memory(out *outcome) {
	n := r.cfg.keys
	// Live heap only: collect, return free memory to the OS, then read
	// RSS, the same measure as the C driver's.
	runtime.GC()
	debug.FreeOSMemory()
	before := rssBytes()
	keyBytes := 0
	t0 := time.Now()
	for i := 0; i < n; i++ {
		k := memoryKey(i)
		keyBytes += len(k)
		if r.sc != nil {
			r.sc.Inc(k)
		} else {
			syncMapInc(r.sm, k)
		}
	}
	out.seconds = time.Since(t0).Seconds()
	runtime.GC()
	debug.FreeOSMemory()
	after := rssBytes()
	out.ops = uint64(n)
	out.extra = fmt.Sprintf("bytes_per_key=%.1f",
		float64(after-before-int64(keyBytes))/float64(n))
	if s := r.size(); s != n {
		out.why = fmt.Sprintf("size %d, expected %d", s, n)
		return
	}
	for i := 0; i < n; i++ {
		if v, ok := r.value(memoryKey(i)); v != 1 || !ok {
			out.why = fmt.Sprintf("key %s holds %d", memoryKey(i), v)
			return
		}
	}
}

func (r *run) timed(out *outcome) {
	cfg := r.cfg
	slots := make([]slot, cfg.threads)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	iterating := cfg.workload == "iterate"
	var passes uint64
	for t := 0; t < cfg.threads; t++ {
		ready.Add(1)
		done.Add(1)
		go func(t int) {
			ready.Done()
			<-start
			r.work(t, &slots[t])
			done.Done()
		}(t)
	}
	if iterating {
		ready.Add(1)
		done.Add(1)
		go func() {
			ready.Done()
			<-start
			var sum int64
			for !r.stop.Load() {
				sum += r.iterateOnce()
				passes++
			}
			sinkAll.Add(sum)
			done.Done()
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	time.Sleep(time.Duration(cfg.seconds * float64(time.Second)))
	r.stop.Store(true)
	done.Wait()
	out.seconds = time.Since(t0).Seconds()

	var total uint64
	for i := range slots {
		total += slots[i].ops
	}
	out.ops = total
	if iterating {
		out.extra = fmt.Sprintf("iter_per_s=%.1f", float64(passes)/out.seconds)
	}

	switch cfg.workload {
	case "counter":
		if v := r.at.v.Load(); v != int64(total) {
			out.why = fmt.Sprintf("counter holds %d, expected %d", v, total)
		}
	case "hot":
		if v, ok := r.value(r.keys[0]); v != int64(total) || !ok {
			out.why = fmt.Sprintf("%s holds %d, expected %d", r.keys[0], v, total)
		} else if s := r.size(); s != 1 {
			out.why = fmt.Sprintf("size %d, expected 1", s)
		}
	case "insert":
		if s := r.size(); uint64(s) != total {
			out.why = fmt.Sprintf("size %d, expected %d", s, total)
			return
		}
		var buf []byte
		for t := 0; t < cfg.threads; t++ {
			n := slots[t].ops
			stride := n/1000 + 1
			for j := uint64(0); ; {
				if j >= n {
					j = n
				}
				buf = insertKey(buf, t, j)
				v, ok := r.value(string(buf))
				if (j < n && (v != 1 || !ok)) || (j == n && ok) {
					out.why = fmt.Sprintf("key %s holds %d (present %v)", buf, v, ok)
					return
				}
				if j == n {
					break
				}
				if j < 1000 {
					j++
				} else {
					j += stride
				}
			}
		}
		if sum := r.iterateOnce(); sum != int64(total) {
			out.why = fmt.Sprintf("values sum to %d, expected %d", sum, total)
		}
	default:
		expected := make([]uint64, cfg.keys)
		for t := 0; t < cfg.threads; t++ {
			r.replay(t, slots[t].ops, expected)
		}
		for j, k := range r.keys {
			if v, ok := r.value(k); v != int64(expected[j]) || !ok {
				out.why = fmt.Sprintf("key %s holds %d, expected %d", k, v, expected[j])
				return
			}
		}
		if s := r.size(); s != cfg.keys {
			out.why = fmt.Sprintf("size %d, expected %d", s, cfg.keys)
		}
	}
}

func readZipf(file string, nkeys int) ([]uint32, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seq := make([]uint32, nkeys*4)
	if err := binary.Read(bufio.NewReaderSize(f, 1<<20), binary.LittleEndian, seq); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if n, _ := f.Read(make([]byte, 1)); n != 0 {
		return nil, fmt.Errorf("%s holds more than %d indices", file, len(seq))
	}
	for _, v := range seq {
		if int(v) >= nkeys {
			return nil, fmt.Errorf("%s: index %d out of range", file, v)
		}
	}
	return seq, nil
}

// printStream prints every thread's first n ops as "thread op key", the
// sequence the timed loops follow (the C driver's --stream prints the same).
func printStream(cfg *config, zipf []uint32, n int) {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	mask := uint64(cfg.keys - 1)
	var zmsk uint64
	if zipf != nil {
		zmsk = uint64(len(zipf) - 1)
	}
	var buf []byte
	for t := 0; t < cfg.threads; t++ {
		rng := uint64(t) + 1
		var pos uint64
		if zipf != nil {
			pos = zipfStart(t, zmsk)
		}
		for j := 0; j < n; j++ {
			op, key := "add", ""
			switch cfg.workload {
			case "counter":
				key = "-"
			case "hot":
				key = "somekey"
			case "uniform1k", "iterate", "mixed":
				x := rngNext(&rng)
				key = "k" + strconv.FormatUint(uniformIndex(x, mask), 10)
				if cfg.workload == "mixed" && mixedIsGet(x) {
					op = "get"
				}
			case "zipf1m":
				key = "k" + strconv.FormatUint(uint64(zipf[pos]), 10)
				pos = (pos + 1) & zmsk
			case "insert":
				buf = insertKey(buf, t, uint64(j))
				key = string(buf)
			case "memory":
				key = memoryKey(j)
			}
			fmt.Fprintf(w, "%d %s %s\n", t, op, key)
		}
	}
}

func runCell(cfg *config, zipf []uint32) outcome {
	r := &run{cfg: cfg}
	var out outcome
	out.extra = "-"
	switch cfg.impl {
	case "go_atomic":
		r.at = new(paddedInt64)
	case "go_safecounter":
		r.sc = &SafeCounter{v: make(map[string]int)}
	case "go_syncmap":
		r.sm = new(sync.Map)
	}
	switch cfg.workload {
	case "hot":
		r.keys = []string{"somekey"}
	case "uniform1k", "mixed", "iterate", "zipf1m":
		r.keys = make([]string, cfg.keys)
		for i := range r.keys {
			r.keys[i] = "k" + strconv.Itoa(i)
		}
		r.mask = uint64(cfg.keys - 1)
		r.zipf = zipf
		r.zmsk = uint64(len(zipf) - 1)
	}
	for _, k := range r.keys {
		r.preload(k)
	}
	if cfg.workload == "memory" {
		r.memory(&out)
	} else {
		r.timed(&out)
	}
	return out
}

func main() {
	var cfg config
	var reps, stream int
	flag.StringVar(&cfg.impl, "impl", "", "go_safecounter, go_syncmap or go_atomic")
	flag.StringVar(&cfg.workload, "workload", "", "counter hot uniform1k zipf1m insert mixed iterate memory")
	flag.IntVar(&cfg.threads, "threads", 1, "goroutines")
	flag.Float64Var(&cfg.seconds, "seconds", 1, "seconds per rep")
	flag.IntVar(&cfg.rep, "rep", 1, "index of the first rep")
	flag.IntVar(&reps, "reps", 1, "reps to run")
	flag.IntVar(&cfg.keys, "keys", 0, "keys (default per workload)")
	flag.StringVar(&cfg.zipfFile, "zipf-file", "", "Zipf index file (tally-bench --gen-zipf)")
	flag.IntVar(&stream, "stream", 0, "print each thread's first N ops instead of running")
	flag.Parse()

	usage := func(msg string) {
		fmt.Fprintln(os.Stderr, "go-bench:", msg)
		os.Exit(2)
	}
	if stream > 0 && cfg.impl == "" {
		cfg.impl = "go_syncmap"
		if cfg.workload == "counter" {
			cfg.impl = "go_atomic"
		}
	}
	counter := cfg.impl == "go_atomic"
	switch cfg.impl {
	case "go_atomic", "go_safecounter", "go_syncmap":
	default:
		usage("unknown impl " + strconv.Quote(cfg.impl))
	}
	if counter != (cfg.workload == "counter") {
		usage(cfg.impl + " does not run workload " + cfg.workload)
	}
	if cfg.keys == 0 {
		switch cfg.workload {
		case "uniform1k", "mixed", "iterate":
			cfg.keys = 1024
		case "zipf1m":
			cfg.keys = 1 << 20
		case "memory":
			cfg.keys = 1000000
		}
	}
	switch cfg.workload {
	case "counter", "hot", "insert", "memory":
	case "uniform1k", "mixed", "iterate", "zipf1m":
		if cfg.keys&(cfg.keys-1) != 0 {
			usage("--keys must be a power of two")
		}
	default:
		usage("unknown workload " + strconv.Quote(cfg.workload))
	}
	if cfg.workload == "memory" {
		cfg.threads = 1
	}
	if cfg.threads < 1 || cfg.seconds <= 0 || reps < 1 {
		usage("bad --threads, --seconds or --reps")
	}
	var zipf []uint32
	if cfg.workload == "zipf1m" {
		if cfg.zipfFile == "" {
			usage("zipf1m needs --zipf-file (tally-bench --gen-zipf FILE --keys K)")
		}
		var err error
		if zipf, err = readZipf(cfg.zipfFile, cfg.keys); err != nil {
			fmt.Fprintln(os.Stderr, "go-bench:", err)
			os.Exit(1)
		}
	}
	if stream > 0 {
		printStream(&cfg, zipf, stream)
		return
	}

	status := 0
	for rep := cfg.rep; rep < cfg.rep+reps; rep++ {
		out := runCell(&cfg, zipf)
		check := "ok"
		if out.why != "" {
			check = "FAIL"
			status = 1
		}
		fmt.Printf("%s,%s,%d,%d,%.4f,%d,%.3f,%s,%s\n", cfg.impl, cfg.workload,
			cfg.threads, rep, out.seconds, out.ops,
			float64(out.ops)/out.seconds/1e6, check, out.extra)
		if out.why != "" {
			fmt.Fprintf(os.Stderr, "check=FAIL %s %s threads=%d rep=%d: %s\n",
				cfg.impl, cfg.workload, cfg.threads, rep, out.why)
		}
		runtime.GC()
	}
	os.Exit(status)
}
