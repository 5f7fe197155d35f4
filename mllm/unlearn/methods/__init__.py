"""Built-in unlearning methods; importing this package registers them."""

from . import chip, exact, ga, graddiff, hierarchy, kl, npo, siu  # noqa: F401
