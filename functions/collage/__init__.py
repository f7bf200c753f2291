"""TikTok cover collage processor: the logic shared by the Lambda handlers, the `collage`
command and the tests. Modules here know nothing of Lambda; `collage.handlers` adapts them."""
