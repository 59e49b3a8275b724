"""Short questions paired with the one sentence that answers each (written apart, few shared
words): retrieval checks against the real models use them."""

from __future__ import annotations

PAIRS = [
    ("how do plants turn sunlight into food",
     "Photosynthesis lets green plants convert light, water and carbon dioxide into sugar."),
    ("largest planet in our solar system",
     "Jupiter is a gas giant and by far the biggest planet orbiting the Sun."),
    ("what organelle produces energy in cells",
     "Mitochondria generate most of the cell's supply of ATP through respiration."),
    ("iron tower in paris",
     "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars."),
    ("baking bread with a sourdough starter",
     "A sourdough starter is a fermented culture of flour and water used to leaven bread."),
    ("how does tcp recover lost packets",
     "TCP detects missing segments with acknowledgements and retransmits them."),
    ("interest earned on interest",
     "Compound interest is calculated on the principal plus the interest already accrued."),
    ("bowed string instrument smaller than a viola",
     "The violin is the smallest and highest-pitched member of the violin family."),
    ("who painted the mona lisa",
     "Leonardo da Vinci painted the Mona Lisa in the early sixteenth century."),
    ("why is the sky blue",
     "Rayleigh scattering of sunlight by air molecules makes the daytime sky look blue."),
    ("symptoms of dehydration",
     "Thirst, dark urine, dizziness and fatigue are common signs of dehydration."),
    ("how vaccines train the immune system",
     "Vaccines expose the immune system to an antigen so it forms memory cells."),
    ("tallest mountain on earth",
     "Mount Everest in the Himalayas rises 8,849 metres above sea level."),
    ("what causes ocean tides",
     "Tides are caused mainly by the Moon's gravitational pull on the oceans."),
    ("sorting algorithm with n log n average time",
     "Quicksort partitions an array around a pivot and averages O(n log n) comparisons."),
    ("freezing point of water in fahrenheit",
     "Pure water freezes at 32 degrees Fahrenheit, which is 0 degrees Celsius."),
    ("first person to walk on the moon",
     "Neil Armstrong stepped onto the lunar surface during Apollo 11 in 1969."),
    ("how do bees make honey",
     "Honeybees collect nectar, add enzymes and evaporate it in the comb to make honey."),
    ("capital city of japan", "Tokyo is the capital of Japan and its most populous metropolis."),
    ("what is inflation in economics",
     "Inflation is the rate at which the general level of prices for goods rises."),
    ("how to tie a bowline knot",
     "To tie a bowline, form a small loop, pass the end up through it, around the line, "
     "and back down."),
    ("speed of light in vacuum",
     "Light travels through a vacuum at about 299,792 kilometres per second."),
    ("chess piece that moves in an L shape",
     "The knight moves two squares in one direction and then one square sideways."),
    ("what do pandas eat", "Giant pandas feed almost entirely on bamboo shoots and leaves."),
]  # fmt: skip

# Nine of them, for the adapter / index / HTTP tests: (query, document) and the two lists.
NINE = [PAIRS[i] for i in (0, 1, 3, 5, 8, 13, 22, 23, 18)]
QUERIES = [q for q, _ in NINE]
DOCS = [d for _, d in NINE]
