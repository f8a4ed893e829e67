"""Output writers: map pixels (gray or colormapped), the contact sheet and the HTML report."""
