"""The reporting side of the benchmark: the ratios against their targets
(PASS/MISS), the markdown tables, the figure and the summary printed at
the end."""
import statistics

from bench.ops import DESCRIPTION

# (name, numerator op, denominator op, target): the ratio of their
# per-image times must be at most the target.
RATIOS = [
    ('GAIN (joint, activations) / segmentation step',
     'gain_joint_activations', 'seg_step', 2.2),
    ('full / activations (joint)',
     'gain_joint_full', 'gain_joint_activations', 1.5),
    ('full / activations (per-class)',
     'gain_per-class_full', 'gain_per-class_activations', 1.5),
    ('Grad-CAM inference / classify forward', 'grad_cam', 'classify', 1.2),
    ('mixed16 / float32 GAIN step (joint, activations)',
     'gain_joint_activations_mixed16', 'gain_joint_activations', 1.0),
    ('mixed16 / float32 segmentation step', 'seg_step_mixed16', 'seg_step',
     1.0),
]
BATCH_OP = 'gain_joint_activations'   # of the batch-8 throughput target


def config_name(width, size, batch):
    return 'w%g %dx%d b%d' % (width, size, size, batch)


def _median_ratio(a, b):
    return statistics.median(x / y for x, y in zip(a, b))


def ratio_rows(measure, configs, gpu):
    """Each target's ratio in each configuration: the median over the
    rounds of the ratio of the two operations (timed next to each other,
    so both saw the same load), beside it the same of their CPU times;
    on GPU the batch-8 per-image throughput against batch 1 (>= 2)."""
    rows = []
    for cfg in configs:
        for name, num, den, target in RATIOS:
            a, b = measure.get((cfg, num)), measure.get((cfg, den))
            if a and b:
                rows.append(dict(
                    ratio=name, config=config_name(*cfg), ops=[num, den],
                    cfg=list(cfg), value=_median_ratio(a['wall_s'],
                                                       b['wall_s']),
                    cpu_time_value=_median_ratio(a['cpu_s'], b['cpu_s']),
                    target=target, at_most=True, verdict=''))
        a = measure.get(((cfg[0], cfg[1], 1), BATCH_OP))
        b = measure.get((cfg, BATCH_OP))
        if cfg[2] == 8 and a and b:
            rows.append(dict(
                ratio='batch 8 / batch 1 per-image throughput (%s)'
                % BATCH_OP, config=config_name(*cfg), ops=[], cfg=list(cfg),
                value=a['per_image_s'] / b['per_image_s'],
                cpu_time_value=None, target=2.0, at_most=False,
                verdict='' if gpu else 'n/a (target is for GPU)'))
    for r in rows:
        ok = (r['value'] <= r['target']) == r['at_most']
        r['verdict'] = r['verdict'] or ('PASS' if ok else 'MISS')
    return rows


def fmt_ms(seconds):
    """Milliseconds to about three significant figures."""
    ms = 1000.0 * seconds
    return '%.0f' % ms if ms >= 100 else '%.1f' % ms if ms >= 1 else \
        '%.3f' % ms


def op_table(results, measure):
    """Per operation its per-image time in each configuration (and
    relative to the segmentation step), then its peak memory."""
    configs = [tuple(c) for c in results['configs']]
    head = ['operation'] + ['%s: ms/image (x seg step)' % config_name(*c)
                            for c in configs] + [
        '%s: peak %s MiB (op\'s own)' % (config_name(*c), 'GPU pool' if
                                         results['gpu'] else 'RSS')
        for c in configs]
    lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
    for op in results['ops']:
        times, mems = [], []
        for c in configs:
            m, seg = measure.get((c, op)), measure.get((c, 'seg_step'))
            if m is None:
                times.append('-')
                mems.append('-')
                continue
            times.append(fmt_ms(m['per_image_s']) + (' (%.2fx)' % (
                m['per_image_s'] / seg['per_image_s']) if seg else '') + (
                ' [%d erased]' % m['erased_images'] if 'erased_images' in m
                else ''))
            mems.append('%.0f (%+.0f)' % (m['mem_peak_mib'], m['mem_peak_mib']
                                          - m['mem_start_mib']))
        lines.append('| ' + ' | '.join([DESCRIPTION[op]] + times + mems) +
                     ' |')
    return '\n'.join(lines)


def ratio_table(results):
    """One row per ratio and configuration, with its target and verdict."""
    lines = ['| ratio | config | value | CPU-time ratio | target | verdict |',
             '|---|---|---|---|---|---|']
    for r in results['ratios']:
        lines.append('| %s | %s | %.2f | %s | %s %.1f | %s |' % (
            r['ratio'], r['config'], r['value'], '-' if r['cpu_time_value']
            is None else '%.2f' % r['cpu_time_value'],
            '<=' if r['at_most'] else '>=', r['target'], r['verdict']))
    return '\n'.join(lines)


def plot(results, measure, path):
    """The figure: per-image times of every operation and configuration
    (log scale) beside the ratios against their targets."""
    import numpy as np
    from visualizations import plt, save_figure
    configs, ops = [tuple(c) for c in results['configs']], results['ops']
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(15, 5.5),
                                 gridspec_kw=dict(width_ratios=[3, 2]))
    width = 0.8 / max(1, len(configs))
    for j, c in enumerate(configs):
        ax.bar(np.arange(len(ops)) + (j - (len(configs) - 1) / 2) * width,
               [1000 * measure[(c, op)]['per_image_s'] if (c, op) in measure
                else np.nan for op in ops], width, label=config_name(*c))
    ax.set_yscale('log')
    ax.yaxis.set_major_formatter(plt.LogFormatter())   # no math text
    ax.set_ylabel('ms per image (median)')
    ax.set_xticks(np.arange(len(ops)))
    ax.set_xticklabels([o.replace('gain_', 'GAIN_').replace('_', '\n')
                        for o in ops], fontsize=7)
    ax.legend(fontsize=8)
    ax.set_title('per-image time (%s)' % results['device_name'])
    rows = results['ratios']
    bx.barh(np.arange(len(rows)), [r['value'] for r in rows], color=[
        dict(PASS='tab:green', MISS='tab:red').get(r['verdict'], 'tab:gray')
        for r in rows])
    for i, r in enumerate(rows):
        bx.plot([r['target']] * 2, [i - 0.4, i + 0.4], 'k--', linewidth=1)
        bx.text(r['value'], i, ' %.2f' % r['value'], va='center', fontsize=7)
    bx.set_yticks(np.arange(len(rows)))
    bx.set_yticklabels(['%s\n[%s]' % (r['ratio'], r['config'])
                        for r in rows], fontsize=6)
    bx.invert_yaxis()
    bx.set_xlabel('ratio (dashed: target; green PASS, red MISS)')
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
