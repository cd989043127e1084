"""galaxy-da: training."""
