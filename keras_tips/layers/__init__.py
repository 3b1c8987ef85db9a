"""Building blocks of the TIPS encoders."""
