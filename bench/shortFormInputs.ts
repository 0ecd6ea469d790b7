// The short-form question of the benchmarks: one question and five passages of about 100 words
// (shortForm.bench.ts in one process, startup.bench.ts as whole processes).
import type {Passage} from "../lib/selfrag/prompts.js";

export const QUESTION = "Who designed the Eiffel Tower?";

export const PASSAGES: readonly Passage[] = [
    {
        title: "Eiffel Tower",
        text: "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after the " +
            "engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889 as the centrepiece of the " +
            "1889 World's Fair. Although initially criticised by some of France's leading artists and intellectuals for its " +
            "design, it has since become a global cultural icon of France and one of the most recognisable structures in the " +
            "world. The tower received about six million visitors a year and is the most visited monument with an entrance fee."
    },
    {
        title: "Maurice Koechlin",
        text: "Maurice Koechlin was a Swiss-born French structural engineer. Together with Émile Nouguier, also an engineer at " +
            "the Compagnie des Établissements Eiffel, he drew the first sketch of a very tall metal pylon in June 1884, the idea " +
            "that became the Eiffel Tower. The architect Stephen Sauvestre later refined the design, adding the decorative " +
            "arches at the base and a glass pavilion on the first level. Koechlin also worked on the iron framework of the " +
            "Statue of Liberty and on many railway bridges built by the company across Europe."
    },
    {
        title: "Stephen Sauvestre",
        text: "Stephen Sauvestre was a French architect known for his villas and industrial buildings in and around Paris. He " +
            "joined the project of a 300-metre tower in 1884 and reworked the engineers' first sketch into a more elegant " +
            "monument, giving the base its arches and the structure its curved outline. He also designed the Menier chocolate " +
            "factory buildings at Noisiel and several pavilions for the 1889 Exposition Universelle, where the tower was " +
            "presented to the public as the entrance arch of the fair in the spring of that year."
    },
    {
        title: "Exposition Universelle (1889)",
        text: "The Exposition Universelle of 1889 was a world's fair held in Paris from 6 May to 31 October 1889. It marked " +
            "the hundredth anniversary of the storming of the Bastille and attracted more than thirty-two million visitors. " +
            "The fair covered the Champ de Mars, the Trocadéro, the quai d'Orsay and part of the Esplanade des Invalides. Its " +
            "main symbol was the Eiffel Tower, which served as the entrance arch, while the Galerie des machines showed the " +
            "largest interior space in the world at the time, built of iron and glass by Ferdinand Dutert."
    },
    {
        title: "Wrought iron",
        text: "Wrought iron is an iron alloy with a very low carbon content, in contrast to cast iron. It is a semi-fused mass " +
            "of iron with fibrous slag inclusions, which give it a grain resembling wood that is visible when it is etched or " +
            "bent to the point of failure. Wrought iron is tough, malleable, ductile, corrosion resistant and easily welded. " +
            "Before steel became cheap in the late nineteenth century it was the most common structural metal, used for " +
            "bridges, ships, railway rails and large buildings such as the Eiffel Tower and the Crystal Palace."
    }
];
