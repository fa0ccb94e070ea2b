// Per-call cost of a full Resilience4j decorator chain with every call succeeding:
// Retry (outermost) > CircuitBreaker > RateLimiter > TimeLimiter > Bulkhead (innermost).
//  - asyncChain: Decorators.ofCompletionStage, the only way to put a TimeLimiter in a
//    chain without a thread hop; the work returns an already-completed future, and the
//    result is taken with join().
//  - syncChain:  Decorators.ofSupplier with the same chain minus the TimeLimiter.
// Decorators wraps in call order, so the last with*() is the outermost layer.
// Each thread builds its decorated supplier once (as a real user would) over the
// shared breaker/limiter/bulkhead/retry instances; only the per-thread counter changes.
// The TimeLimiter schedules a timeout task on the scheduler for every call and cancels
// it on completion; removeOnCancel=false (the JDK default) leaves cancelled tasks in the
// scheduler's queue until their 1 s delay expires, true removes them at cancel time.
package dev.msakit.bench.r4j;

import io.github.resilience4j.bulkhead.Bulkhead;
import io.github.resilience4j.circuitbreaker.CircuitBreaker;
import io.github.resilience4j.decorators.Decorators;
import io.github.resilience4j.ratelimiter.RateLimiter;
import io.github.resilience4j.ratelimiter.RateLimiterConfig;
import io.github.resilience4j.retry.Retry;
import io.github.resilience4j.timelimiter.TimeLimiter;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
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
public class ChainBench {

    /** The stateful components, shared by all threads. */
    @State(Scope.Benchmark)
    public static class Components {
        Retry retry;
        CircuitBreaker cb;
        RateLimiter rateLimiter;
        Bulkhead bulkhead;

        @Setup(Level.Trial)
        public void setup() {
            retry = Retry.ofDefaults("bench"); // 3 attempts
            cb = CircuitBreaker.ofDefaults("bench");
            rateLimiter = RateLimiter.of("bench", RateLimiterConfig.custom()
                .limitForPeriod(1_000_000_000) // never the bottleneck
                .limitRefreshPeriod(Duration.ofSeconds(1))
                .timeoutDuration(Duration.ZERO)
                .build());
            bulkhead = Bulkhead.ofDefaults("bench"); // semaphore, 25 concurrent calls
        }

        @TearDown(Level.Trial)
        public void check() {
            CircuitBreaker.Metrics m = cb.getMetrics();
            if (cb.getState() != CircuitBreaker.State.CLOSED
                || m.getNumberOfFailedCalls() != 0 || m.getNumberOfNotPermittedCalls() != 0) {
                throw new IllegalStateException("unexpected breaker state " + cb.getState()
                    + ", failed " + m.getNumberOfFailedCalls()
                    + ", not permitted " + m.getNumberOfNotPermittedCalls());
            }
        }
    }

    /** TimeLimiter and the scheduler it (and async Retry) needs; async chain only. */
    @State(Scope.Benchmark)
    public static class Async {
        @Param({"false", "true"})
        public boolean removeOnCancel;

        TimeLimiter timeLimiter;
        ScheduledThreadPoolExecutor scheduler;

        @Setup(Level.Trial)
        public void setup() {
            timeLimiter = TimeLimiter.ofDefaults("bench"); // 1 s timeout
            scheduler = (ScheduledThreadPoolExecutor) Executors.newScheduledThreadPool(1);
            scheduler.setRemoveOnCancelPolicy(removeOnCancel);
        }

        @TearDown(Level.Trial)
        public void shutdown() {
            scheduler.shutdownNow();
        }
    }

    @State(Scope.Thread)
    public static class AsyncCall {
        long x;
        Supplier<CompletionStage<Long>> supplier;

        @Setup(Level.Trial)
        public void build(Components c, Async a) {
            supplier = Decorators
                .<Long>ofCompletionStage(() -> CompletableFuture.completedFuture(Work.work(x++, false)))
                .withBulkhead(c.bulkhead)                       // innermost
                .withTimeLimiter(a.timeLimiter, a.scheduler)
                .withRateLimiter(c.rateLimiter)
                .withCircuitBreaker(c.cb)
                .withRetry(c.retry, a.scheduler)                // outermost
                .decorate();
        }
    }

    @State(Scope.Thread)
    public static class SyncCall {
        long x;
        Supplier<Long> supplier;

        @Setup(Level.Trial)
        public void build(Components c) {
            supplier = Decorators
                .ofSupplier(() -> Work.work(x++, false))
                .withBulkhead(c.bulkhead)                       // innermost
                .withRateLimiter(c.rateLimiter)
                .withCircuitBreaker(c.cb)
                .withRetry(c.retry)                             // outermost
                .decorate();
        }
    }

    @Benchmark
    @Threads(1)
    public Long asyncChain_t1(AsyncCall call) {
        return call.supplier.get().toCompletableFuture().join();
    }

    @Benchmark
    @Threads(2)
    public Long asyncChain_t2(AsyncCall call) {
        return call.supplier.get().toCompletableFuture().join();
    }

    @Benchmark
    @Threads(1)
    public Long syncChain_t1(SyncCall call) {
        return call.supplier.get();
    }

    @Benchmark
    @Threads(2)
    public Long syncChain_t2(SyncCall call) {
        return call.supplier.get();
    }
}
