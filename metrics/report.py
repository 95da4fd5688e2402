"""Markdown tables of metrics (one set of titles and units) and the
demo's results page."""
import numpy as np

#: Title of each metric key, and its scale on screen (100: percent).
TITLES = dict(
    accuracy=('Accuracy', 100), accuracy_class=('Accuracy Class', 100),
    mean_iu=('Mean IU', 100), fwavacc=('FWAVACC', 100), map=('mAP', 100),
    map_val=('mAP (val, in-distribution)', 100),
    attention_miou_tuned=('Attention mIoU (tuned tau)', 100),
    attention_tuned_tau=('tuned tau', 1),
    attention_miou_fixed=('Attention mIoU @tau', 100),
    attention_miou_sigma=('Attention mIoU @sigma', 100),
    attention_miou=('Attention mIoU (this split\'s best tau)', 100),
    attention_tau=('best tau', 1),
    pointing_15px=('Pointing game (15 px)', 100),
    pointing_scaled=('Pointing game (@px)', 100),
    pointing_15px_chance=('Chance (15 px)', 100),
    pointing_scaled_chance=('Chance (@px)', 100),
    pointing_chance=('Chance (exact, 0 px)', 100),
    energy_box=('Energy in box', 100),
    energy=('Energy in mask', 100),
    pointing=('Pointing (exact, 0 px; ours)', 100),
    ap=('AP', 100), iou=('IoU', 100),
    pseudo_iou=('Pseudo-label IoU (train)', 100),
    attention_iou_tuned=('Attention IoU (tuned tau)', 100),
    attention_iou_fixed=('Attention IoU @tau', 100),
    zero_cams=('Zero CAMs', 100),
    cue_gap_absent=('Cue gap (absent)', 100),
    cue_gap_present=('Cue gap (present)', 100),
    cue_auc_absent=('Cue AUC (absent)', 1),
    cue_auc_present=('Cue AUC (present)', 1),
    positive_rate_present=('Positive rate (present)', 100),
    positive_rate_absent=('Positive rate (absent)', 100))


def title(key, tau=None, px=None):
    """The title of ``key``, ``@tau`` and ``@px`` filled in."""
    text = TITLES[key][0]
    text = text.replace('@px', '%g px' % px if px else '15 px per 500 px')
    return text.replace('@tau', '@%.2f' % tau) if tau is not None else text


def cell(value, key, digits=1):
    """``value`` of ``key`` on screen; a list (per seed) as mean ± sd
    (ddof 1); a bootstrap dict as mean [interval]; '-' for None."""
    scale = TITLES[key][1]
    digits = digits if scale != 1 else max(digits, 2)   # a tau, an AUC
    if isinstance(value, dict):
        lo, hi = value['ci95'] or (np.nan, np.nan)
        return '%s [%s, %s]' % tuple(
            cell(v, key, digits) for v in (value['mean'], lo, hi))
    if value is None or (np.ndim(value) == 0 and np.isnan(value)):
        return '-'
    values = np.asarray(value, dtype=float) * scale
    if values.ndim == 0:
        return '%.*f' % (digits, values)
    if len(values) == 1:
        return '%.*f' % (digits, values[0])
    return '%.*f ± %.*f' % (digits, values.mean(), digits, values.std(ddof=1))


def markdown_table(rows, keys, digits=1, tau=None, first='model', px=None):
    """``rows``: ``[(name, {key: value})]`` (values as :func:`cell`)."""
    lines = ['| %s | ' % first + ' | '.join(title(k, tau, px) for k in keys)
             + ' |', '|---' * (len(keys) + 1) + '|']
    for name, m in rows:
        lines.append('| %s | %s |' % (name, ' | '.join(
            cell(m.get(k), k, digits) for k in keys)))
    return '\n'.join(lines)


def compare_table(a, b, keys, tau=None, px=None, digits=1):
    """Each metric of ``a`` and ``b`` (``(name, metrics)``) and B - A."""
    (na, ma), (nb, mb) = a, b
    lines = ['| metric | A: %s | B: %s | B - A |' % (na, nb),
             '|---|---|---|---|']
    for k in keys:
        diff = ('%+.*f' % (digits, TITLES[k][1] * (mb[k] - ma[k]))
                if ma.get(k) is not None and mb.get(k) is not None else '-')
        lines.append('| %s | %s | %s | %s |' % (
            title(k, tau, px), cell(ma.get(k), k, digits),
            cell(mb.get(k), k, digits), diff))
    return '\n'.join(lines)


def class_table(per_class, tau=None, px=None):
    """A row per class of ``per_class`` ``{class: {key: value}}``."""
    keys = list(next(iter(per_class.values()), {}))
    return markdown_table(list(per_class.items()), keys, tau=tau,
                          first='class', px=px)


def class_matrix(per_row, key, tau=None, px=None):
    """One metric of every model and class: ``per_row`` ``{model: {class
    name: {key: value}}}`` (:func:`metrics.bootstrap.per_class` of each
    model) -> rows the models, columns the classes; a chance level (a
    property of the data) in one row."""
    if key.endswith('_chance'):
        per_row = {'chance (any model)': next(iter(per_row.values()))}
    classes = list(next(iter(per_row.values())))
    lines = ['| %s | %s |' % (title(key, tau, px), ' | '.join(classes)),
             '|---' * (len(classes) + 1) + '|']
    for name, values in per_row.items():
        lines.append('| %s | %s |' % (name, ' | '.join(
            cell(values[c].get(key), key) for c in classes)))
    return '\n'.join(lines)


def difference_table(differences, digits=1, tau=None, px=None):
    """A row per comparison and metric of ``{'b - a': {key:
    paired_difference}}``."""
    lines = ['| difference | metric | mean | 95 % interval (seeds and '
             'images) | sd over seeds | per seed | |',
             '|---|---|---|---|---|---|---|']
    for name, metrics in differences.items():
        for key, d in metrics.items():
            sd = '-' if d.get('sd_seeds') is None else '%.*f' % (
                digits, d['sd_seeds'])
            lines.append('| %s | %s | %+.*f | [%+.*f, %+.*f] | %s | %s | %s |'
                         % (name, title(key, tau, px), digits, d['mean'],
                            digits, d['ci95'][0], digits, d['ci95'][1], sd,
                            ' '.join('%+.*f' % (digits, v)
                                     for v in d['per_seed']),
                            'shown' if d['shown'] else 'not shown'))
    return '\n'.join(lines)


def reuse_note(result):
    """What an orchestrator's wall time leaves out: ``' (R of its N jobs
    ...)'`` when ``result`` (its :meth:`Pipeline.timing
    <pipeline.orchestrator.Pipeline.timing>`) reused R jobs, else ''."""
    if not result.get('jobs_reused'):
        return ''
    return (' (%d of its %d jobs reused from an earlier run: their time is '
            'not in it)' % (result['jobs_reused'], result['jobs']))


def results_page(results, keys, experiment=None):
    """``media/RESULTS.md``: the demo's ``results`` and what
    ``experiment`` (experiment.json; None: not run) established."""
    claims = ('`make experiment` has not been run: nothing is established '
              'yet.' if experiment is None else
              'From `%s` (%d seeds, %.0f minutes%s; [EXPERIMENT.md]'
              '(EXPERIMENT.md)):\n\n%s' % (
                  experiment['command'], len(experiment['seeds']),
                  experiment['wall_s'] / 60., reuse_note(experiment),
                  difference_table(experiment['differences'],
                                   tau=experiment['config']['sigma'],
                                   px=experiment.get('pointing_scaled_px'))))
    tau, px = results['config']['sigma'], results['pointing_scaled_px']
    per_class = results['per_class']
    keys_of_class = next(iter(next(iter(per_class.values())).values()))
    return RESULTS % dict(
        command=results['command'], seconds=results['wall_s'],
        reused=reuse_note(results), sigma=tau,
        summary=markdown_table(results['rows'], keys, tau=tau, px=px),
        differences=difference_table(results['differences'], tau=tau, px=px),
        classes='\n\n'.join(class_matrix(per_class, k, tau, px)
                              for k in keys_of_class), claims=claims)


RESULTS = """# Demo results (embedded `shapes` dataset, unbiased `test` split)

Written by `make demo` (`%(command)s`) in %(seconds).0f s%(reused)s; the
numbers are also in [results.json](results.json). Percentages (AUC as a
probability); with several seeds, mean ± standard deviation (ddof 1). Each
model's tau was chosen on the `tune` split; `@%(sigma)g` is the sigma GAIN
trains its mask with. *Cue gap*: on images without class c, how much more
often c is called when c's context cue is present; *Cue AUC*: the same
without a threshold (0.5: the cue is ignored). Definitions: `metrics/`.

%(summary)s

What this run shows (paired bootstrap over the test images; one run of
each, so the seeds' spread is not measured here):

%(differences)s

Every class of each model (this run, interval over the test images):

%(classes)s

The control fine-tunes the trunk on the GAIN schedule without L_am, so
GAIN - control is what attention mining adds. What holds over seeds:

%(claims)s

![image | Grad-CAM before GAIN | Grad-CAM after GAIN](attention_before_after.png)

![attention mIoU against the threshold](attention_miou_vs_tau.png)

Training curves: [classifier](loss_classifier.png), [GAIN](loss_gain.png)
(seed of the first run), [GAIN's validation attention](attention_val_gain.png),
[GAIN_ext](loss_gain_ext.png); what GAIN erases at its last iteration:
[image | CAM | mask | erased image](attention_during_gain.png).
"""
