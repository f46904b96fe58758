"""Tasks shipped with rnnbench: each module registers its tasks with ``@register_task``."""
