/* every unit test suite; unit_main.c expands SUITE() twice */
SUITE(suite_codec)
SUITE(suite_config)
SUITE(suite_scenarios)
SUITE(suite_oom)
