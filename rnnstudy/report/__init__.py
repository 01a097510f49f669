"""Report builders: results store -> pandas frames -> seaborn figures and a written report."""
