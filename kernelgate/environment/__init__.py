"""A workspace's development environment: what it needs (detect), its project file
(project), and installing its packages in a sandbox (install). See docs/environment.md."""
