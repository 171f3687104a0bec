/* Registers every connector kappa ships (see connectors.h). One line per scheme. */
#include "../runtime/connector.h"
#include "connectors.h"

extern const kp_connector kp_file_connector, kp_stdin_connector, kp_stdout_connector;
extern const kp_connector kp_kafka_connector;
extern const kp_connector kp_es_connector;

void kp_connectors_register_builtin(void)
{
    kp_connector_register(&kp_file_connector);
    kp_connector_register(&kp_stdin_connector);
    kp_connector_register(&kp_stdout_connector);
    kp_connector_register(&kp_kafka_connector);
    kp_connector_register(&kp_es_connector);
}
