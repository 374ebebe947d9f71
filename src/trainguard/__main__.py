from trainguard.cli import app

app()
