"""Examples of what a user of this project writes: their own async tasks."""
