/* A shared object that is not a kappa job: no `kappa_plugin` symbol. */
__attribute__((visibility("default"))) int not_a_kappa_job = 42;
