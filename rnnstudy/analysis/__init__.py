"""The analysis: memory length as an estimate (T50, growth law, Kaplan-Meier) and its coverage by simulation."""
