from tests.llm.helpers import fake_llm, fake_llm_server

__all__ = ["fake_llm", "fake_llm_server"]
