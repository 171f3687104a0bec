/* The connectors kappa ships, registered with the runtime's connector registry. */
#ifndef KP_CONNECTORS_H
#define KP_CONNECTORS_H

/* Registers file:, stdin: and stdout: (and, as they are added, kafka: and es:). Call once
 * from the main thread before running jobs. */
void kp_connectors_register_builtin(void);

#endif
