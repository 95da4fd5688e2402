"""The reporting side of the benchmark: the ratios against their targets
(PASS/MISS), the markdown tables, the figure (drawn through
visualizations) and the summary printed at the end."""
import statistics

from bench.ops import DESCRIPTION

# (name, numerator op, denominator op, target, kind): ``max``: the ratio
# of per-image times must be <= target; ``min``: >= target.
RATIOS = [
    ('GAIN (joint, activations) / segmentation step',
     'gain_joint_activations', 'seg_step', 2.2, 'max'),
    ('full / activations (joint)',
     'gain_joint_full', 'gain_joint_activations', 1.5, 'max'),
    ('full / activations (per-class)',
     'gain_per-class_full', 'gain_per-class_activations', 1.5, 'max'),
    ('Grad-CAM inference / classify forward', 'grad_cam', 'classify', 1.2,
     'max'),
    ('mixed16 / float32 GAIN step (joint, activations)',
     'gain_joint_activations_mixed16', 'gain_joint_activations', 1.0, 'max'),
    ('mixed16 / float32 segmentation step', 'seg_step_mixed16', 'seg_step',
     1.0, 'max'),
]
BATCH_OP = 'gain_joint_activations'   # the op of the batch-8 throughput target


def config_name(width, size, batch):
    return 'w%g %dx%d b%d' % (width, size, size, batch)


def config_slug(width, size, batch):
    return 'w%g_s%d_b%d' % (width, size, batch)


def by_config_and_op(results):
    """``{(cfg, op): measurement}`` of ``results``."""
    return {(tuple(m['cfg']), m['op']): m for m in results['measurements']}


def ratio_rows(measure, configs, gpu):
    """The targets' ratios: the median of the per-round ratios of the two
    operations (measured next to each other), with the ratio of their
    medians and of their CPU times beside it."""
    rows = []
    for cfg in configs:
        for name, num, den, target, kind in RATIOS:
            a, b = measure.get((cfg, num)), measure.get((cfg, den))
            if not a or not b:
                continue
            per_round = [x / y for x, y in zip(a['wall_s'], b['wall_s'])]
            rows.append(dict(
                ratio=name, config=config_name(*cfg), cfg=list(cfg),
                numerator=[list(cfg), num], denominator=[list(cfg), den],
                value=statistics.median(per_round), per_round=per_round,
                ratio_of_medians=a['per_image_s'] / b['per_image_s'],
                cpu_time_value=statistics.median(
                    [x / y for x, y in zip(a['cpu_s'], b['cpu_s'])]),
                target=target, kind=kind, gpu_only=False))
    for cfg in configs:   # batch-8 per-image throughput against batch 1
        base = (cfg[0], cfg[1], 1)
        a, b = measure.get((base, BATCH_OP)), measure.get((cfg, BATCH_OP))
        if cfg[2] != 8 or not a or not b:
            continue
        value = a['per_image_s'] / b['per_image_s']
        rows.append(dict(
            ratio='batch 8 / batch 1 per-image throughput (%s)' % BATCH_OP,
            config=config_name(*cfg), cfg=list(cfg),
            numerator=[list(base), BATCH_OP],
            denominator=[list(cfg), BATCH_OP],
            value=value, per_round=None, ratio_of_medians=value,
            cpu_time_value=None, target=2.0, kind='min', gpu_only=True))
    for r in rows:
        ok = (r['value'] <= r['target'] if r['kind'] == 'max'
              else r['value'] >= r['target'])
        r['verdict'] = ('n/a (target is for GPU)' if r['gpu_only'] and
                        not gpu else 'PASS' if ok else 'MISS')
    return rows


def fmt_ms(seconds):
    """Milliseconds to three significant figures or so."""
    ms = 1000.0 * seconds
    return '%.0f' % ms if ms >= 100 else '%.1f' % ms if ms >= 1 else \
        '%.3f' % ms


def markdown(results):
    """The two markdown tables of ``results``: per-image times and peak
    memory per operation, and the ratios against their targets."""
    return op_table(results), ratio_table(results)


def op_table(results):
    """One row per operation: its per-image time in each configuration
    (and relative to the segmentation step), then its peak memory; a line
    on the timing below."""
    configs = [tuple(c) for c in results['configs']]
    measure = by_config_and_op(results)
    gpu = results['gpu']
    mem = 'GPU pool' if gpu else 'RSS'
    head = ['operation'] + ['%s: ms/image (x seg step)' % config_name(*c)
                            for c in configs] + \
        ['%s: peak %s MiB (op\'s own)' % (config_name(*c), mem)
         for c in configs]
    lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
    for op in results['ops']:
        cells, mems = [DESCRIPTION[op]], []
        for c in configs:
            m, seg = measure.get((c, op)), measure.get((c, 'seg_step'))
            if m is None:
                cells.append('-')
                mems.append('-')
                continue
            rel = '' if not seg else ' (%.2fx)' % (
                m['per_image_s'] / seg['per_image_s'])
            extra = ''
            if 'erased_images' in m['info']:
                extra = ' [%d erased]' % m['info']['erased_images']
            cells.append(fmt_ms(m['per_image_s']) + rel + extra)
            if gpu:
                peak, before = m.get('gpu_used_peak_mib'), m.get(
                    'gpu_used_before_mib')
            else:
                peak, before = m['rss_peak_mib'], m['rss_before_mib']
            mems.append('-' if peak is None else '%.0f (%+.0f)' % (
                peak, peak - before))
        lines.append('| ' + ' | '.join(cells + mems) + ' |')
    lines += ['', 'Timing: ' + '; '.join(timing_notes(results)) +
              '. Memory: peak during '
              'the operation (its own: above the RSS at its start, which '
              'holds the model, the Adam states and the batch).']
    return '\n'.join(lines)


def timing_notes(results):
    """Per configuration: its rounds and their seconds, and how often an
    operation ran a round; or its worker's error."""
    notes = []
    for c in (tuple(c) for c in results['configs']):
        w = results['workers'].get(config_name(*c), {})
        if 'rounds' in w:
            ms = [m for m in results['measurements'] if tuple(m['cfg']) == c]
            inner = [k for m in ms for k in m['inner']]
            notes.append('%s: %d round(s) of %s s, each operation run %d '
                         'to %d times a round' % (
                             config_name(*c), w['rounds'],
                             ', '.join('%.0f' % s for s in w['round_s']),
                             min(inner), max(inner)))
        elif 'error' in w:
            notes.append('%s: ERROR %s' % (config_name(*c), w['error']))
    return notes


def ratio_table(results):
    """One row per ratio and configuration, with its target and verdict."""
    rlines = ['| ratio | config | value (median of per-round ratios) | '
              'ratio of medians | CPU-time ratio | target | verdict |',
              '|---|---|---|---|---|---|---|']
    for r in results['ratios']:
        rlines.append('| %s | %s | %.2f | %.2f | %s | %s %.1f | %s |' % (
            r['ratio'], r['config'], r['value'], r['ratio_of_medians'],
            '-' if r['cpu_time_value'] is None else
            '%.2f' % r['cpu_time_value'],
            '<=' if r['kind'] == 'max' else '>=', r['target'], r['verdict']))
    return '\n'.join(rlines)


def plot(results, path):
    """The figure at ``path``: per-image times of every operation and
    configuration (log scale) beside the ratios against their targets."""
    import numpy as np
    from visualizations import plt, save_figure
    configs = [tuple(c) for c in results['configs']]
    measure = by_config_and_op(results)
    ops = results['ops']
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(15, 5.5),
                                 gridspec_kw=dict(width_ratios=[3, 2]))
    width = 0.8 / max(1, len(configs))
    for j, c in enumerate(configs):
        vals = [1000 * measure[(c, op)]['per_image_s']
                if (c, op) in measure and 'error' not in measure[(c, op)]
                else np.nan for op in ops]
        ax.bar(np.arange(len(ops)) + (j - (len(configs) - 1) / 2) * width,
               vals, width, label=config_name(*c))
    ax.set_yscale('log')
    # Plain tick labels ('100'): visualizations turns math text off.
    ax.yaxis.set_major_formatter(plt.LogFormatter())
    ax.yaxis.set_minor_formatter(plt.LogFormatter())
    ax.set_ylabel('ms per image (median)')
    ax.set_xticks(np.arange(len(ops)))
    ax.set_xticklabels([o.replace('gain_', 'GAIN_').replace('_', '\n')
                        for o in ops], fontsize=7)
    ax.legend(fontsize=8)
    ax.grid(axis='y', alpha=0.3)
    ax.set_title('per-image time (%s)' % results['device_name'])
    rows = results['ratios']
    y = np.arange(len(rows))
    colors = ['tab:green' if r['verdict'] == 'PASS' else
              'tab:red' if r['verdict'] == 'MISS' else 'tab:gray'
              for r in rows]
    bx.barh(y, [r['value'] for r in rows], color=colors)
    for i, r in enumerate(rows):
        bx.plot([r['target']] * 2, [i - 0.4, i + 0.4], 'k--', linewidth=1)
        bx.text(r['value'], i, ' %.2f' % r['value'], va='center', fontsize=7)
    bx.set_yticks(y)
    bx.set_yticklabels(['%s\n[%s]' % (r['ratio'], r['config'])
                        for r in rows], fontsize=6)
    bx.invert_yaxis()
    bx.set_xlabel('ratio (dashed: target; green PASS, red MISS)')
    bx.set_title('ratios against targets')
    fig.tight_layout()
    save_figure(fig, path, dpi=100)




def summary(results):
    """What a run prints at its end: the machine and its load, both
    tables, and what dominates each profiled operation."""
    machine = results['machine']
    lines = ['', '%s, %s; device %s; load average %.1f at the start, %.1f '
             'at the end' % (results['date'], results['device_name'],
                             results['device'],
                             machine['load_average_start'][0],
                             machine['load_average_end'][0]),
             '', results['markdown']['table'], '',
             results['markdown']['ratios'], '']
    for r in results['profiles']:
        if 'top' in r:
            lines.append('profile %s %s: %s' % (
                config_name(*r['cfg']), r['op'], ', '.join(
                    '%s %s %.0f%%' % (t['function'], t['phase'],
                                      100 * t['share'])
                    for t in r['top'][:3])))
    return '\n'.join(lines)
