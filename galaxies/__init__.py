"""galaxy-da: galaxies."""
