// Per-call cost of a Resilience4j circuit breaker (CircuitBreakerConfig.ofDefaults():
// count-based window of 100 calls, 50% failure threshold), against the bare call.
//  - bareCall:    the work alone, the baseline.
//  - cbLowLevel:  tryAcquirePermission + timestamps + onSuccess/onError, the same
//                 steps as a Rust breaker's try_acquire + record.
//  - cbDecorated: cb.executeSupplier(...), the usual user-facing API (boxes the result).
// failing=true makes 1 call in 16 throw, too few to open the breaker. The breaker is
// shared (Scope.Benchmark), so the _t2 methods have two threads contending on it.
package dev.msakit.bench.r4j;

import io.github.resilience4j.circuitbreaker.CircuitBreaker;
import io.github.resilience4j.circuitbreaker.CircuitBreakerConfig;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Threads;

@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class CircuitBreakerBench {

    @State(Scope.Benchmark)
    public static class Shared {
        @Param({"false", "true"})
        public boolean failing;

        CircuitBreaker cb;

        @Setup(Level.Trial)
        public void setup() {
            cb = CircuitBreaker.of("bench", CircuitBreakerConfig.ofDefaults());
        }

        @TearDown(Level.Trial)
        public void check() {
            // The breaker must never have opened: otherwise we measured rejections.
            CircuitBreaker.Metrics m = cb.getMetrics();
            if (cb.getState() != CircuitBreaker.State.CLOSED || m.getNumberOfNotPermittedCalls() != 0) {
                throw new IllegalStateException("breaker left CLOSED: " + cb.getState()
                    + ", not permitted: " + m.getNumberOfNotPermittedCalls());
            }
        }
    }

    /** Per-thread call counter: the argument of the work. */
    @State(Scope.Thread)
    public static class Counter {
        long x;
    }

    static long bare(Shared s, Counter c) {
        try {
            return Work.work(c.x++, s.failing);
        } catch (RuntimeException e) {
            return -1;
        }
    }

    static long lowLevel(Shared s, Counter c) {
        CircuitBreaker cb = s.cb;
        if (!cb.tryAcquirePermission()) {
            throw new IllegalStateException("call not permitted");
        }
        long start = cb.getCurrentTimestamp();
        try {
            long r = Work.work(c.x++, s.failing);
            cb.onSuccess(cb.getCurrentTimestamp() - start, cb.getTimestampUnit());
            return r;
        } catch (RuntimeException e) {
            cb.onError(cb.getCurrentTimestamp() - start, cb.getTimestampUnit(), e);
            return -1;
        }
    }

    static long decorated(Shared s, Counter c) {
        long x = c.x++;
        boolean failing = s.failing;
        try {
            return s.cb.executeSupplier(() -> Work.work(x, failing));
        } catch (Work.InjectedFailure e) {
            return -1;
        }
    }

    @Benchmark
    @Threads(1)
    public long bareCall_t1(Shared s, Counter c) {
        return bare(s, c);
    }

    @Benchmark
    @Threads(2)
    public long bareCall_t2(Shared s, Counter c) {
        return bare(s, c);
    }

    @Benchmark
    @Threads(1)
    public long cbLowLevel_t1(Shared s, Counter c) {
        return lowLevel(s, c);
    }

    @Benchmark
    @Threads(2)
    public long cbLowLevel_t2(Shared s, Counter c) {
        return lowLevel(s, c);
    }

    @Benchmark
    @Threads(1)
    public long cbDecorated_t1(Shared s, Counter c) {
        return decorated(s, c);
    }

    @Benchmark
    @Threads(2)
    public long cbDecorated_t2(Shared s, Counter c) {
        return decorated(s, c);
    }
}
