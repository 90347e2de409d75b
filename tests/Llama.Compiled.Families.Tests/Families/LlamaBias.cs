namespace Llama.Compiled.Families.Tests;

/// <summary>A llama config with attention_bias and mlp_bias: biases on q, k, v, o and gate, up, down.</summary>
[LlamaModel("Configs/llama_bias.json")]
public partial class LlamaBiasModel;

public sealed class LlamaBiasModelTests : FamilyTests
{
    protected override string ConfigFile => "llama_bias.json";

    protected override ILlamaModel Load(string folder) => LlamaBiasModel.Load(folder);
}
