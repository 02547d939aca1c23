//! Training reaches stated accuracies on XOR, two spirals and the digits
//! data set, on every backend (`<test>::cpu`, `<test>::gpu`). GPU runs need
//! a Vulkan driver (on a machine without a GPU: `apt-get install
//! mesa-vulkan-drivers`).

mod common;

use common::backend_tests;
use retroprop::{Activation, Adam, Device, Init, Loss, Mlp, Sgd, TrainConfig};

backend_tests! {
    fn xor_reaches_full_accuracy(device: Device) {
        let data = common::xor_classes();
        let mlp = Mlp::new(&[2, 4, 2], Activation::Tanh, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Sgd::default().lr(0.5).momentum(0.9))
            .full_batch()
            .epochs(300)
            .init(Init::XavierUniform)
            .seed(1);
        let mut trainer = common::trainer(mlp, config, device);
        trainer.fit(&data, None).unwrap();
        let eval = trainer.evaluate(&data).unwrap();
        assert_eq!(
            eval.accuracy,
            Some(1.0),
            "XOR on {}: {eval:?}",
            trainer.device_name()
        );
        assert!(
            eval.loss < 0.05,
            "XOR loss {} on {}",
            eval.loss,
            trainer.device_name()
        );
    }

    fn two_spirals_reach_95_percent(device: Device) {
        let data = common::two_spirals(100);
        let mlp = Mlp::new(&[2, 32, 32, 2], Activation::Tanh, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Adam::default().lr(0.01))
            .batch_size(20)
            .epochs(150)
            .init(Init::XavierUniform)
            .seed(2);
        let mut trainer = common::trainer(mlp, config, device);
        trainer.fit(&data, None).unwrap();
        let accuracy = trainer.evaluate(&data).unwrap().accuracy.unwrap();
        assert!(
            accuracy >= 0.95,
            "two spirals on {}: accuracy {accuracy}",
            trainer.device_name()
        );
    }

    fn digits_reach_95_percent_on_held_out_data(device: Device) {
        let (train, test) = common::digits().split(0.2, 42).unwrap();
        let mlp = Mlp::new(&[64, 64, 10], Activation::Relu, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Adam::default().lr(3e-3))
            .batch_size(64)
            .epochs(25)
            .init(Init::KaimingUniform)
            .seed(3);
        let mut trainer = common::trainer(mlp, config, device);
        trainer.fit(&train, None).unwrap();
        let accuracy = trainer.evaluate(&test).unwrap().accuracy.unwrap();
        println!(
            "digits on {}: held-out accuracy {accuracy:.4} ({} rows)",
            trainer.device_name(),
            test.rows()
        );
        assert!(
            accuracy >= 0.95,
            "digits on {}: held-out accuracy {accuracy}",
            trainer.device_name()
        );
    }

    fn half_mse_mse_and_bce_learn_xor(device: Device) {
        for loss in [Loss::HalfMse, Loss::Mse, Loss::BceWithLogits] {
            let data = common::xor_values();
            let mlp = Mlp::new(&[2, 8, 1], Activation::Tanh, Activation::Identity).unwrap();
            let config = TrainConfig::default()
                .loss(loss)
                .optimizer(Adam::default().lr(0.05))
                .stochastic()
                .epochs(200)
                .init(Init::XavierUniform)
                .seed(4);
            let mut trainer = common::trainer(mlp, config, device);
            trainer.fit(&data, None).unwrap();
            let out = trainer.predict(data.x()).unwrap();
            let threshold = if loss == Loss::BceWithLogits {
                0.0
            } else {
                0.5
            };
            let predicted: Vec<bool> = out.iter().map(|&o| o > threshold).collect();
            assert_eq!(
                predicted,
                [false, true, true, false],
                "{loss}: outputs {out:?}"
            );
        }
    }
}
