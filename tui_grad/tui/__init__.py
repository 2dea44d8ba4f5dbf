"""tui-grad's Textual user interface."""
