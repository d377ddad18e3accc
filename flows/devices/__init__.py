"""Device tables: one module per device family, data rather than branches."""
