namespace Llama.Compiled.Families.Tests;

/// <summary>Llama 3.2 shape: llama3 rope_scaling (factor 32, low 1, high 4, original 64: head_dim 16 has high, medium and low frequencies), explicit head_dim 16 unlike hidden 48 / 4 heads, tied, two eos ids.</summary>
[LlamaModel("Configs/llama3.json")]
public partial class Llama3Model;

public sealed class Llama3ModelTests : FamilyTests
{
    protected override string ConfigFile => "llama3.json";

    protected override ILlamaModel Load(string folder) => Llama3Model.Load(folder);
}
