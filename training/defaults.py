"""The training scripts' defaults: the ``cpu`` preset of the ``shapes``
pipeline, the settings behind the README's Results (its GAIN weights and
sigma chosen on the ``tune`` split, models/pretrained/README.md). The
orchestrators' ``cpu`` preset is :data:`CPU`; a flag given on a script's
command line overrides its default."""

CPU = dict(width=0.0625, fcn_iterations=1500, fcn_lr=1e-3,
           classifier_iterations=600, gain_iterations=150, gain_lr=3e-4,
           am_weight=1.0, seg_weight=2.0, sigma=0.5, ext_images=60,
           ext_weight=10.0)
#: Images per update of each script (the preset's command lines).
BATCH_SIZE = dict(fcn=8, classifier=16, gain=8)
