"""newsletter_kit."""
