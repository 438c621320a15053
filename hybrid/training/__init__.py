"""Training: one recipe loader for both models (`recipe`), the classifier (`classifier`, accelerate) and the
detector (`detector`, Ultralytics). `train/*.py` are short launchers of their `main`."""
