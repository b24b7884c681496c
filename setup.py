from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def tree(top):
    """data_files entries shipping a top-level folder under share/kernelgate/."""
    entries = []
    for folder in sorted(p for p in (HERE / top).rglob("*") if p.is_dir()) + [HERE / top]:
        files = [str(f.relative_to(HERE)) for f in folder.iterdir() if f.is_file()]
        if files:
            entries.append((str(Path("share/kernelgate") / folder.relative_to(HERE)), files))
    return entries


setup(
    name="kernelgate",
    version="0.1.0",
    description="A Jupyter kernel gateway that runs each kernel in a sandboxed Docker container",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.11",
    packages=find_packages(include=["kernelgate", "kernelgate.*", "kernelgate_agent"]),
    data_files=tree("kernelspecs") + tree("images"),
    install_requires=[
        "jupyter_client>=8.6",
        "ipykernel>=6.29",
        "pyzmq>=25",
        "tornado>=6.4",
        "orjson>=3.9",
        "docker>=7.1",
        "traitlets>=5.14",
        "sqlalchemy>=2.0",
        "alembic>=1.13",
        "psycopg[binary]>=3.2",
        "pyjwt[crypto]>=2.8",
        "boto3>=1.34",
        "prometheus_client>=0.20",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-tornasync>=0.6",
            "jupyter_server>=2.14",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "websocket-client>=1.8",
            "requests>=2.31",
            "moto[server]>=5.0",
            "jupyterlab>=4.2",
            "playwright>=1.44",
            "kubernetes-validate>=1.30",  # deploy/kubernetes/ checked against the API's schemas
        ],
    },
    entry_points={
        "console_scripts": ["kernelgate = kernelgate.app:main"],
        "jupyter_client.kernel_provisioners": [
            "docker-provisioner = kernelgate.provisioners.docker:DockerProvisioner",
            "kernelgate-local-provisioner = kernelgate.provisioners.base:LocalKernelProvisioner",
        ],
    },
)
