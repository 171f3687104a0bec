/* The window's incremental aggregate: a count per key and window, so each window holds one long
 * in the state backend (as kappa's kp_count holds one counter), not the clicks themselves. */
package dev.kappa.bench;

import org.apache.flink.api.common.functions.AggregateFunction;

public final class CountClicks implements AggregateFunction<Click, Long, Long> {
    private static final long serialVersionUID = 1L;

    @Override
    public Long createAccumulator() {
        return 0L;
    }

    @Override
    public Long add(Click click, Long count) {
        return count + 1;
    }

    @Override
    public Long getResult(Long count) {
        return count;
    }

    @Override
    public Long merge(Long a, Long b) {
        return a + b;
    }
}
