"""Everything that talks to Kaggle: credentials, submissions, private datasets, the wheels for notebooks, notebooks."""
