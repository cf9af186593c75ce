"""The model's Markdown, made readable where it is shown: plain text for WeChat's chat (`chat`), safe
HTML for the answer page (`html`), one parser for both (`markdown`), formulas for each (`latex`)."""
