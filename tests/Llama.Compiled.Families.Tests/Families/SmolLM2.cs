namespace Llama.Compiled.Families.Tests;

/// <summary>SmolLM2 shape: tied embeddings, rope_theta 100000, GQA 3:1.</summary>
[LlamaModel("Configs/smollm2.json")]
public partial class SmolLM2Model;

public sealed class SmolLM2ModelTests : FamilyTests
{
    protected override string ConfigFile => "smollm2.json";

    protected override ILlamaModel Load(string folder) => SmolLM2Model.Load(folder);
}
