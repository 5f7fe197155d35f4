"""The certificate PDF's figures, as a person reads them."""

from compliance.pipeline.pdf import _value


def test_figures_have_four_significant_digits_and_no_negative_zero() -> None:
    assert _value(-0.0) == "0" and _value(-1e-20 * 0) == "0"
    assert _value(0.433512) == "0.4335" and _value(-0.07692) == "-0.07692"
    assert _value(None) == "—" and _value(3) == "3"
