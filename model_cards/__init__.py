"""The model card templates (Jinja): model_cards/<kind>.md, installed as the package hybrid.model_cards."""
