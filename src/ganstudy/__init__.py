"""ganstudy: does LSGAN train more stably than the standard GAN? A reproducible study."""

__version__ = "0.1.0"
