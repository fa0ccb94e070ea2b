// The protected work shared by every benchmark: it returns its input, or, when asked
// to fail, throws one preallocated exception for 1 call in 16. The exception has no
// stack trace and no suppression list, so throwing it costs next to nothing and the
// benchmarks measure the resilience wrappers, not exception construction.
package dev.msakit.bench.r4j;

final class Work {

    static final RuntimeException FAILURE = new InjectedFailure();

    private Work() {
    }

    static long work(long x, boolean failing) {
        if (failing && x % 16 == 0) {
            throw FAILURE;
        }
        return x;
    }

    static final class InjectedFailure extends RuntimeException {
        InjectedFailure() {
            super("injected failure", null, false, false);
        }
    }
}
