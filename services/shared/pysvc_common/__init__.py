"""Code shared by every Python service in this repository."""
