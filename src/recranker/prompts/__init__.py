"""Prompts of the three ranking tasks: templates (data files), rendering, instruction data."""

from recranker.prompts.render import IDENTIFIERS, Prompt, PromptRenderer
from recranker.prompts.templates import TASKS, Template, TemplateError, load_template, load_templates

__all__ = [
    "IDENTIFIERS",
    "TASKS",
    "Prompt",
    "PromptRenderer",
    "Template",
    "TemplateError",
    "load_template",
    "load_templates",
]
