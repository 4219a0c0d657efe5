/*
 * TallyBench.java - the Java side of tally's benchmark suite: the counters
 * a Java programmer would use instead of tally, run under exactly the
 * protocol of the C driver (bench/README.md):
 *
 *   java -cp DIR TallyBench --impl NAME --workload W --threads T
 *        --seconds S --rep R [--reps N] [--keys K] [--zipf-file F]
 *        [--warmup S]
 *   java -cp DIR TallyBench --stream N --workload W [--threads T] [--keys K]
 *        [--zipf-file F]     each thread's first N ops ("thread op key"),
 *                            as the C driver prints them
 *
 * prints impl,workload,threads,rep,seconds,ops,mops,check,extra per rep.
 *
 *   java_chm_longadder  ConcurrentHashMap<String, LongAdder>: get first,
 *                       computeIfAbsent on a miss, then increment()
 *   java_longadder      one LongAdder (workload counter)
 *   java_atomiclong     one AtomicLong (workload counter)
 *
 * Before the reps, the same cell runs once for --warmup seconds (0.3 by
 * default; not printed) so that the JIT has compiled the loops. Each rep
 * then gets a fresh structure in the same JVM.
 *
 * Exit status: 0 ok, 1 a check failed, 2 usage.
 */
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

public final class TallyBench {
    static final int BATCH = 256;

    // ---- configuration ----------------------------------------------------
    String impl, workload, zipfFile;
    int threads = 1, rep = 1, reps = 1, keys = 0;
    double seconds = 1.0, warmup = 0.3;
    int stream = 0;

    // ---- one run's state ----------------------------------------------------
    volatile boolean stop;
    String[] keyNames;
    long mask;
    int[] zipf;
    long zmask;
    ConcurrentHashMap<String, LongAdder> chm;
    LongAdder adder;
    AtomicLong atomic;
    static volatile long sink;

    // xorshift64* seeded with thread index + 1: the same stream as bench.h.
    static long rngNext(long[] s) {
        long x = s[0];
        x ^= x >>> 12;
        x ^= x << 25;
        x ^= x >>> 27;
        s[0] = x;
        return x * 0x2545F4914F6CDD1DL;
    }

    static int uniformIndex(long x, long mask) { return (int) ((x >>> 33) & mask); }
    static boolean mixedIsGet(long x) { return ((x >>> 11) % 10) == 0; }
    static long zipfStart(int i, long mask) { return (i * 2654435761L) & mask; }

    static void chmInc(ConcurrentHashMap<String, LongAdder> m, String key) {
        LongAdder a = m.get(key);
        if (a == null)
            a = m.computeIfAbsent(key, k -> new LongAdder());
        a.increment();
    }

    static String memoryKey(int i) {
        char[] b = {'k', 'e', 'y', ':', '0', '0', '0', '0', '0', '0', '0', '0'};
        for (int j = 11; j >= 4; j--, i /= 10)
            b[j] = (char) ('0' + i % 10);
        return new String(b);
    }

    /* One thread's timed loop; each (impl, workload) pair has its own loop
     * so that every op is a direct call. Returns the ops done. */
    long work(int t) {
        long n = 0, got = 0;
        long[] rng = {t + 1L};
        final String[] keys = keyNames;
        final long mask = this.mask, zmask = this.zmask;
        final int[] zipf = this.zipf;
        long pos = zipf != null ? zipfStart(t, zmask) : 0;
        switch (impl) {
        case "java_longadder": {
            LongAdder a = adder;
            while (!stop) {
                for (int i = 0; i < BATCH; i++)
                    a.increment();
                n += BATCH;
            }
            break;
        }
        case "java_atomiclong": {
            AtomicLong a = atomic;
            while (!stop) {
                for (int i = 0; i < BATCH; i++)
                    a.getAndIncrement();
                n += BATCH;
            }
            break;
        }
        case "java_chm_longadder": {
            ConcurrentHashMap<String, LongAdder> m = chm;
            switch (workload) {
            case "hot":
                while (!stop) {
                    for (int i = 0; i < BATCH; i++)
                        chmInc(m, keys[0]);
                    n += BATCH;
                }
                break;
            case "uniform1k":
            case "iterate":
                while (!stop) {
                    for (int i = 0; i < BATCH; i++)
                        chmInc(m, keys[uniformIndex(rngNext(rng), mask)]);
                    n += BATCH;
                }
                break;
            case "zipf1m":
                while (!stop) {
                    for (int i = 0; i < BATCH; i++) {
                        chmInc(m, keys[zipf[(int) pos]]);
                        pos = (pos + 1) & zmask;
                    }
                    n += BATCH;
                }
                break;
            case "mixed":
                while (!stop) {
                    for (int i = 0; i < BATCH; i++) {
                        long x = rngNext(rng);
                        String k = keys[uniformIndex(x, mask)];
                        if (mixedIsGet(x)) {
                            LongAdder a = m.get(k);
                            if (a != null)
                                got += a.sum();
                        } else {
                            chmInc(m, k);
                        }
                    }
                    n += BATCH;
                }
                break;
            case "insert":
                while (!stop) {
                    for (int i = 0; i < BATCH; i++)
                        chmInc(m, "t" + t + ":" + (n + i));
                    n += BATCH;
                }
                break;
            default:
                throw new IllegalStateException(workload);
            }
            break;
        }
        default:
            throw new IllegalStateException(impl);
        }
        sink += got;
        return n;
    }

    long iterateOnce() {
        long sum = 0;
        for (Map.Entry<String, LongAdder> e : chm.entrySet())
            sum += e.getValue().sum();
        return sum;
    }

    /* The key's value, or null when absent. */
    Long value(String key) {
        LongAdder a = chm.get(key);
        return a == null ? null : a.sum();
    }

    void replay(int t, long ops, long[] expected) {
        switch (workload) {
        case "uniform1k":
        case "iterate":
        case "mixed": {
            long[] rng = {t + 1L};
            boolean mixed = workload.equals("mixed");
            for (long n = 0; n < ops; n++) {
                long x = rngNext(rng);
                if (!mixed || !mixedIsGet(x))
                    expected[uniformIndex(x, mask)]++;
            }
            break;
        }
        case "zipf1m": {
            long len = zipf.length;
            long laps = ops / len, rest = ops % len;
            if (laps != 0)
                for (int j : zipf)
                    expected[j] += laps;
            long pos = zipfStart(t, zmask);
            for (long n = 0; n < rest; n++) {
                expected[zipf[(int) pos]]++;
                pos = (pos + 1) & zmask;
            }
            break;
        }
        default:
            break;
        }
    }

    static final class Outcome {
        double seconds;
        long ops;
        String extra = "-";
        String why;
    }

    static long heapUsed() {
        Runtime rt = Runtime.getRuntime();
        long used = Long.MAX_VALUE;
        // Several collections: the used heap settles once nothing is left
        // to finalize or promote.
        for (int i = 0; i < 4; i++) {
            System.gc();
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            used = Math.min(used, rt.totalMemory() - rt.freeMemory());
        }
        return used;
    }

    void memory(Outcome out) {
        int n = keys;
        long before = heapUsed();
        long keyBytes = 0;
        long t0 = System.nanoTime();
        for (int i = 0; i < n; i++) {
            String k = memoryKey(i);
            keyBytes += k.length();
            chmInc(chm, k);
        }
        out.seconds = (System.nanoTime() - t0) * 1e-9;
        long after = heapUsed();
        out.ops = n;
        out.extra = String.format(Locale.ROOT, "bytes_per_key=%.1f",
                (double) (after - before - keyBytes) / n);
        if (chm.size() != n) {
            out.why = "size " + chm.size() + ", expected " + n;
            return;
        }
        for (int i = 0; i < n; i++) {
            Long v = value(memoryKey(i));
            if (v == null || v != 1) {
                out.why = "key " + memoryKey(i) + " holds " + v;
                return;
            }
        }
    }

    void timed(Outcome out, double secs) throws InterruptedException {
        boolean iterating = workload.equals("iterate");
        int parties = threads + (iterating ? 1 : 0) + 1;
        CyclicBarrier barrier = new CyclicBarrier(parties);
        long[] ops = new long[threads * 8]; // one slot per 64 bytes
        long[] passes = new long[1];
        Thread[] ts = new Thread[parties - 1];
        stop = false;
        for (int t = 0; t < threads; t++) {
            final int idx = t;
            ts[t] = new Thread(() -> {
                await(barrier);
                ops[idx * 8] = work(idx);
            });
        }
        if (iterating) {
            ts[threads] = new Thread(() -> {
                await(barrier);
                long sum = 0, p = 0;
                while (!stop) {
                    sum += iterateOnce();
                    p++;
                }
                sink += sum;
                passes[0] = p;
            });
        }
        for (Thread th : ts)
            th.start();
        await(barrier);
        long t0 = System.nanoTime();
        Thread.sleep((long) (secs * 1000), (int) ((secs * 1e9) % 1_000_000));
        stop = true;
        for (Thread th : ts)
            th.join();
        out.seconds = (System.nanoTime() - t0) * 1e-9;

        long total = 0;
        for (int t = 0; t < threads; t++)
            total += ops[t * 8];
        out.ops = total;
        if (iterating)
            out.extra = String.format(Locale.ROOT, "iter_per_s=%.1f", passes[0] / out.seconds);

        switch (workload) {
        case "counter": {
            long v = adder != null ? adder.sum() : atomic.get();
            if (v != total)
                out.why = "counter holds " + v + ", expected " + total;
            break;
        }
        case "hot": {
            Long v = value(keyNames[0]);
            if (v == null || v != total)
                out.why = keyNames[0] + " holds " + v + ", expected " + total;
            else if (chm.size() != 1)
                out.why = "size " + chm.size() + ", expected 1";
            break;
        }
        case "insert": {
            if (chm.size() != total) {
                out.why = "size " + chm.size() + ", expected " + total;
                break;
            }
            outer:
            for (int t = 0; t < threads; t++) {
                long n = ops[t * 8], stride = n / 1000 + 1;
                for (long j = 0;; j = j < 1000 ? j + 1 : j + stride) {
                    if (j >= n)
                        j = n;
                    String k = "t" + t + ":" + j;
                    Long v = value(k);
                    if ((j < n && (v == null || v != 1)) || (j == n && v != null)) {
                        out.why = "key " + k + " holds " + v;
                        break outer;
                    }
                    if (j == n)
                        break;
                }
            }
            if (out.why == null && iterateOnce() != total)
                out.why = "values sum to " + iterateOnce() + ", expected " + total;
            break;
        }
        default: {
            long[] expected = new long[keys];
            for (int t = 0; t < threads; t++)
                replay(t, ops[t * 8], expected);
            for (int j = 0; j < keys; j++) {
                Long v = value(keyNames[j]);
                if (v == null || v != expected[j]) {
                    out.why = "key " + keyNames[j] + " holds " + v + ", expected " + expected[j];
                    break;
                }
            }
            if (out.why == null && chm.size() != keys)
                out.why = "size " + chm.size() + ", expected " + keys;
        }
        }
    }

    static void await(CyclicBarrier b) {
        try {
            b.await();
        } catch (InterruptedException | BrokenBarrierException e) {
            throw new IllegalStateException(e);
        }
    }

    Outcome runCell(double secs) throws InterruptedException {
        Outcome out = new Outcome();
        chm = null;
        adder = null;
        atomic = null;
        switch (impl) {
        case "java_chm_longadder": chm = new ConcurrentHashMap<>(); break;
        case "java_longadder": adder = new LongAdder(); break;
        case "java_atomiclong": atomic = new AtomicLong(); break;
        default: throw new IllegalStateException(impl);
        }
        if (chm != null && keyNames != null)
            for (String k : keyNames)
                chm.put(k, new LongAdder());
        if (workload.equals("memory"))
            memory(out);
        else
            timed(out, secs);
        return out;
    }

    /* Prints every thread's first n ops as "thread op key", the sequence
     * the timed loops follow (the C driver's --stream prints the same). */
    void printStream(int n) {
        StringBuilder sb = new StringBuilder();
        java.io.PrintStream out = System.out;
        for (int t = 0; t < threads; t++) {
            long[] rng = {t + 1L};
            long pos = zipf != null ? zipfStart(t, zmask) : 0;
            for (int j = 0; j < n; j++) {
                String op = "add", key;
                switch (workload) {
                case "counter": key = "-"; break;
                case "hot": key = "somekey"; break;
                case "uniform1k":
                case "iterate":
                case "mixed": {
                    long x = rngNext(rng);
                    key = keyNames[uniformIndex(x, mask)];
                    if (workload.equals("mixed") && mixedIsGet(x))
                        op = "get";
                    break;
                }
                case "zipf1m":
                    key = keyNames[zipf[(int) pos]];
                    pos = (pos + 1) & zmask;
                    break;
                case "insert": key = "t" + t + ":" + j; break;
                case "memory": key = memoryKey(j); break;
                default: throw new IllegalStateException(workload);
                }
                sb.append(t).append(' ').append(op).append(' ').append(key).append('\n');
                if (sb.length() > 1 << 16) {
                    out.print(sb);
                    sb.setLength(0);
                }
            }
        }
        out.print(sb);
        out.flush();
    }

    static int usage(String msg) {
        System.err.println("TallyBench: " + msg);
        return 2;
    }

    int main2(String[] args) throws IOException, InterruptedException {
        for (int i = 0; i < args.length; i += 2) {
            if (i + 1 >= args.length)
                return usage("missing value for " + args[i]);
            String v = args[i + 1];
            try {
                switch (args[i]) {
                case "--impl": impl = v; break;
                case "--workload": workload = v; break;
                case "--threads": threads = Integer.parseInt(v); break;
                case "--seconds": seconds = Double.parseDouble(v); break;
                case "--rep": rep = Integer.parseInt(v); break;
                case "--reps": reps = Integer.parseInt(v); break;
                case "--keys": keys = Integer.parseInt(v); break;
                case "--zipf-file": zipfFile = v; break;
                case "--warmup": warmup = Double.parseDouble(v); break;
                case "--stream": stream = Integer.parseInt(v); break;
                default: return usage("unknown option " + args[i]);
                }
            } catch (NumberFormatException e) {
                return usage("bad value for " + args[i] + ": " + v);
            }
        }
        if (stream > 0 && impl == null && workload != null)
            impl = workload.equals("counter") ? "java_longadder" : "java_chm_longadder";
        if (impl == null || workload == null)
            return usage("--impl and --workload are required");
        boolean counterImpl = impl.equals("java_longadder") || impl.equals("java_atomiclong");
        if (!counterImpl && !impl.equals("java_chm_longadder"))
            return usage("unknown impl " + impl);
        if (counterImpl != workload.equals("counter"))
            return usage(impl + " does not run workload " + workload);
        if (keys == 0) {
            switch (workload) {
            case "uniform1k": case "mixed": case "iterate": keys = 1024; break;
            case "zipf1m": keys = 1 << 20; break;
            case "memory": keys = 1000000; break;
            default: break;
            }
        }
        switch (workload) {
        case "counter": case "hot": case "insert": case "memory": break;
        case "uniform1k": case "mixed": case "iterate": case "zipf1m":
            if ((keys & (keys - 1)) != 0)
                return usage("--keys must be a power of two");
            break;
        default: return usage("unknown workload " + workload);
        }
        if (workload.equals("memory"))
            threads = 1;
        if (threads < 1 || !(seconds > 0) || reps < 1)
            return usage("bad --threads, --seconds or --reps");

        if (workload.equals("hot")) {
            keyNames = new String[] {"somekey"};
        } else if (keys > 0 && !workload.equals("memory")) {
            keyNames = new String[keys];
            for (int i = 0; i < keys; i++)
                keyNames[i] = "k" + i;
            mask = keys - 1;
        }
        if (workload.equals("zipf1m")) {
            if (zipfFile == null)
                return usage("zipf1m needs --zipf-file (tally-bench --gen-zipf FILE --keys K)");
            byte[] b = Files.readAllBytes(Paths.get(zipfFile));
            if (b.length != keys * 16) {
                System.err.println("TallyBench: " + zipfFile + " does not hold "
                        + keys * 4 + " indices");
                return 1;
            }
            zipf = new int[keys * 4];
            ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(zipf);
            for (int x : zipf)
                if (x < 0 || x >= keys) {
                    System.err.println("TallyBench: index out of range in " + zipfFile);
                    return 1;
                }
            zmask = zipf.length - 1;
        }

        if (stream > 0) {
            printStream(stream);
            return 0;
        }
        if (warmup > 0 && !workload.equals("memory")) {
            Outcome w = runCell(warmup);
            if (w.why != null) {
                System.err.println("check=FAIL (warm-up) " + impl + " " + workload + ": " + w.why);
                return 1;
            }
        }
        int status = 0;
        for (int r = rep; r < rep + reps; r++) {
            chm = null; // let the previous rep's map go before the next
            Outcome out = runCell(seconds);
            boolean ok = out.why == null;
            System.out.printf(Locale.ROOT, "%s,%s,%d,%d,%.4f,%d,%.3f,%s,%s%n", impl, workload,
                    threads, r, out.seconds, out.ops, out.ops / out.seconds / 1e6,
                    ok ? "ok" : "FAIL", out.extra);
            System.out.flush();
            if (!ok) {
                System.err.printf(Locale.ROOT, "check=FAIL %s %s threads=%d rep=%d: %s%n",
                        impl, workload, threads, r, out.why);
                status = 1;
            }
        }
        return status;
    }

    public static void main(String[] args) throws Exception {
        System.exit(new TallyBench().main2(args));
    }
}
