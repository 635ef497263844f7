# NVE molecular dynamics of a periodic copper box (256 atoms) with an EMT-trained equivar model.
#   python prepare.py cu                 # trains cu.pt2 on EMT data and writes cu.data
#   mpirun -np 2 lmp -in in.cu -var plugin /path/to/libequivar_lammps.so
# Variables: plugin, model (cu.pt2), steps (1000), T (600 K).
variable model index cu.pt2
variable steps index 1000
variable T index 600

units metal
atom_style atomic
boundary p p p
read_data cu.data

plugin load ${plugin}
pair_style equivar
pair_coeff * * ${model} Cu

velocity all create ${T} 4321 mom yes rot no dist gaussian
timestep 0.002                      # 2 fs
fix nve all nve
thermo_style custom step time temp pe ke etotal press
thermo 100
run ${steps}
