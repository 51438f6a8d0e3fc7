/* Forced into the library's compile (-include) when per-layer costs are asked:
 * every layer boundary reads the cost counter. */
#ifndef TM_PROFILE_H
#define TM_PROFILE_H
void tm_layer_mark(unsigned slot);
#define TINYML_LAYER_BEGIN(i) tm_layer_mark(2u * (unsigned)(i))
#define TINYML_LAYER_END(i) tm_layer_mark(2u * (unsigned)(i) + 1u)
#endif
