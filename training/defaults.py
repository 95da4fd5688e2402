"""The training scripts' defaults, a flag on the command line overriding
one: :data:`CPU`, the orchestrators' ``cpu`` preset of the ``shapes``
pipeline behind the README's Results (its GAIN weights and sigma chosen on
the ``tune`` split, models/pretrained/README.md)."""

CPU = dict(width=0.0625, fcn_iterations=1500, fcn_lr=1e-3,
           classifier_iterations=600, gain_iterations=150, gain_lr=3e-4,
           am_weight=1.0, seg_weight=2.0, sigma=0.5, ext_images=60,
           ext_weight=10.0)
#: Images per update of each script (the preset's command lines).
BATCH_SIZE = dict(fcn=8, classifier=16, gain=8)
